package dev.fedge.core;

import java.nio.Buffer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;

/**
 * The round-shared random subset of protocol/sparse.py (its docstring is the specification):
 * the m positions of [0, L) with the smallest key, the key of position p being the
 * little-endian u32 word p of SHA-256("FEDS" || seed u64 LE || block u32 LE) for block 0, 1, ...;
 * ties by position; increasing.
 */
public final class SparseSubset {
    private SparseSubset() {
    }

    /** m = ceil(F L), at least 1 and at most L (as protocol.sparse.kept_count). */
    public static int keptCount(double fraction, long length) {
        if (length == 0) {
            return 0;
        }
        return (int) Math.max(1, Math.min(length, (long) Math.ceil(fraction * length)));
    }

    /** The kept positions, increasing; refuses a zero seed or a kept count outside [1, L]. */
    public static int[] positions(long seed, int length, int kept) {
        if (seed == 0) {
            throw new ProtocolException("a sparse update needs the round's non-zero seed", "bad_payload");
        }
        if (kept <= 0 || kept > length) {
            throw new ProtocolException("a sparse update keeps " + kept + " of " + length + " coordinates",
                    "bad_payload");
        }
        MessageDigest sha;
        try {
            sha = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        // Key in the high 32 bits, position in the low: sorting the longs (with the sign bit
        // flipped, so that signed order is unsigned order) sorts by key, then by position.
        long[] keyed = new long[length];
        ByteBuffer input = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN);
        for (int block = 0; block * 8 < length; block++) {
            // Through Buffer: ByteBuffer.clear() returning ByteBuffer is Java 9's (Android: API 34).
            ((Buffer) input).clear();
            input.put("FEDS".getBytes(StandardCharsets.US_ASCII)).putLong(seed).putInt(block);
            ByteBuffer words = ByteBuffer.wrap(sha.digest(input.array())).order(ByteOrder.LITTLE_ENDIAN);
            for (int j = 0; j < 8 && block * 8 + j < length; j++) {
                long word = words.getInt(4 * j) & 0xFFFFFFFFL;
                keyed[block * 8 + j] = ((word << 32) | (block * 8 + j)) ^ Long.MIN_VALUE;
            }
        }
        Arrays.sort(keyed);
        int[] out = new int[kept];
        for (int i = 0; i < kept; i++) {
            out[i] = (int) (keyed[i] & 0xFFFFFFFFL);
        }
        Arrays.sort(out);
        return out;
    }
}
