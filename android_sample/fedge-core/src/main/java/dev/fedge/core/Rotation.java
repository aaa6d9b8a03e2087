package dev.fedge.core;

import java.nio.Buffer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;

/**
 * The randomized Hadamard rotation of protocol/codec.py: pseudo-random signs from SHA-256,
 * then an orthonormal fast Walsh-Hadamard transform per chunk (computed in double and
 * rounded to float, in the same order as the Python side, so results agree bit for bit).
 */
public final class Rotation {
    private Rotation() {
    }

    /** +1/-1 signs: bit j (least significant first) of SHA-256(seed u64 LE || block u32 LE), a set bit is -1. */
    public static float[] signs(long seed, int length) {
        MessageDigest sha;
        try {
            sha = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        float[] out = new float[length];
        ByteBuffer input = ByteBuffer.allocate(12).order(ByteOrder.LITTLE_ENDIAN);
        for (int block = 0; block * 256 < length; block++) {
            // Through Buffer: ByteBuffer.clear() returning ByteBuffer is Java 9's (Android: API 34).
            ((Buffer) input).clear();
            input.putLong(seed).putInt(block);
            byte[] digest = sha.digest(input.array());
            for (int j = 0; j < 256 && block * 256 + j < length; j++) {
                int bit = (digest[j >> 3] >> (j & 7)) & 1;
                out[block * 256 + j] = bit == 1 ? -1f : 1f;
            }
        }
        return out;
    }

    /** H_C / sqrt(C) applied to each chunk of {@code x} (length a multiple of {@code chunk}, a power of two). */
    public static float[] hadamardChunks(float[] x, int chunk) {
        float[] out = new float[x.length];
        double[] y = new double[chunk];
        double scale = Math.sqrt(chunk);
        for (int start = 0; start < x.length; start += chunk) {
            for (int i = 0; i < chunk; i++) {
                y[i] = x[start + i];
            }
            for (int h = 1; h < chunk; h *= 2) {
                for (int block = 0; block < chunk; block += 2 * h) {
                    for (int i = block; i < block + h; i++) {
                        double a = y[i];
                        double b = y[i + h];
                        y[i] = a + b;
                        y[i + h] = a - b;
                    }
                }
            }
            for (int i = 0; i < chunk; i++) {
                out[start + i] = (float) (y[i] / scale);
            }
        }
        return out;
    }
}
