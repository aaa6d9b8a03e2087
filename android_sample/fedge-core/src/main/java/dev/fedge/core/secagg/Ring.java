package dev.fedge.core.secagg;

import dev.fedge.core.ProtocolException;
import dev.fedge.core.Rotation;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.function.DoubleSupplier;

/**
 * The update as integers on the grid every device of a SecAgg round shares
 * (protocol/secagg/ring.py): the clipped delta zero-padded to a power of two L, rotated by
 * the randomized Hadamard transform (signs from the round's rotation seed), clipped to
 * [-r, r] and stochastically rounded to 2^b levels; and the masked input's wire format.
 */
public final class Ring {
    private static final byte[] MAGIC = {'F', 'S', 'A', 'M'};
    private static final int VERSION = 2; // 2: bit-packed in exactly k bits
    private static final int HEADER_BYTES = 12;

    private Ring() {
    }

    public static int paddedLength(int numValues) {
        int length = 1;
        while (length < numValues) {
            length <<= 1;
        }
        return length;
    }

    /**
     * Codes in [0, 2^b - 1] of the rotated, range-clipped vector, one rounding draw per code
     * (Random::nextDouble on a device; the recorded draws in the golden tests).
     */
    public static long[] quantize(float[] flat, int quantBits, double valueRange, long rotationSeed,
                                  DoubleSupplier uniforms) {
        int length = paddedLength(flat.length);
        float[] padded = new float[length];
        float[] signs = Rotation.signs(rotationSeed, length);
        for (int i = 0; i < flat.length; i++) {
            padded[i] = flat[i] * signs[i];
        }
        float[] rotated = Rotation.hadamardChunks(padded, length);
        // The clip is in float32 with the range rounded to float32, as numpy does it there.
        float bound = (float) valueRange;
        long levels = (1L << quantBits) - 1;
        double perLevel = levels / (2 * valueRange);
        long[] codes = new long[length];
        for (int i = 0; i < length; i++) {
            double x = Math.max(-bound, Math.min(bound, rotated[i]));
            double code = Math.floor((x + valueRange) * perLevel + uniforms.getAsDouble());
            codes[i] = Math.max(0, Math.min(levels, (long) code));
        }
        return codes;
    }

    /** Bytes of {@code length} values of exactly {@code bits} bits, bit-packed. */
    public static int packedBytes(int bits, int length) {
        return (int) (((long) bits * length + 7) / 8);
    }

    /**
     * "FSAM", version 2, k, 0 (bit-packed), 0, u32 L, then each value in exactly k bits, least
     * significant bit first, value after value (protocol/secagg/ring.py's pack).
     */
    public static byte[] pack(long[] values, int bits) {
        ByteBuffer out = ByteBuffer.allocate(HEADER_BYTES + packedBytes(bits, values.length))
                .order(ByteOrder.LITTLE_ENDIAN);
        out.put(MAGIC).put((byte) VERSION).put((byte) bits).put((byte) 0).put((byte) 0).putInt(values.length);
        byte[] body = new byte[packedBytes(bits, values.length)];
        long limit = 1L << bits;
        long position = 0;
        for (long v : values) {
            if (v < 0 || v >= limit) {
                throw new ProtocolException("masked value " + v + " is not below 2^" + bits, "bad_input");
            }
            for (int done = 0; done < bits; ) {
                int index = (int) (position >>> 3);
                int offset = (int) (position & 7);
                int take = Math.min(8 - offset, bits - done);
                body[index] |= (byte) (((v >>> done) & ((1L << take) - 1)) << offset);
                done += take;
                position += take;
            }
        }
        out.put(body);
        return out.array();
    }
}
