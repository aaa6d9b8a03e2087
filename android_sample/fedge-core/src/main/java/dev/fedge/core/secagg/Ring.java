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
    private static final int VERSION = 1;
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

    /** Bytes per value on the wire: 2 when the modulus has at most 16 bits, else 4. */
    public static int containerBytes(int bits) {
        return bits <= 16 ? 2 : 4;
    }

    /** "FSAM", version 1, k, width, 0, u32 L, then the values little-endian. */
    public static byte[] pack(long[] values, int bits) {
        int width = containerBytes(bits);
        ByteBuffer out = ByteBuffer.allocate(HEADER_BYTES + width * values.length).order(ByteOrder.LITTLE_ENDIAN);
        out.put(MAGIC).put((byte) VERSION).put((byte) bits).put((byte) width).put((byte) 0).putInt(values.length);
        long limit = 1L << bits;
        for (long v : values) {
            if (v < 0 || v >= limit) {
                throw new ProtocolException("masked value " + v + " is not below 2^" + bits, "bad_input");
            }
            if (width == 2) {
                out.putShort((short) v);
            } else {
                out.putInt((int) v);
            }
        }
        return out.array();
    }
}
