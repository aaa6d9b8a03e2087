package dev.fedge.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.bouncycastle.crypto.engines.ChaCha7539Engine;
import org.bouncycastle.crypto.params.KeyParameter;
import org.bouncycastle.crypto.params.ParametersWithIV;

/**
 * SecAgg mask expansion (protocol/secagg/prg.py): the ChaCha20 key stream of a 32-byte seed
 * with nonce 0 and counter 0, read as little-endian uint32 words, each reduced mod 2^bits.
 * The cipher is Bouncy Castle's RFC 7539 ChaCha20 (the JDK's ChaCha20 Cipher and its
 * parameter class do not exist on Android), never a hand-written one.
 */
public final class MaskExpansion {
    private MaskExpansion() {
    }

    /** The mask as unsigned values in longs (Java has no uint32). */
    public static long[] expand(byte[] seed, int length, int bits) {
        if (seed.length != 32) {
            throw new ProtocolException("a mask seed is 32 bytes", "bad_key");
        }
        if (bits < 1 || bits > 32) {
            throw new ProtocolException("mask bits must be in [1, 32]", "bad_params");
        }
        ChaCha7539Engine chacha = new ChaCha7539Engine(); // 96-bit nonce, block counter from 0
        chacha.init(true, new ParametersWithIV(new KeyParameter(seed), new byte[12]));
        byte[] stream = new byte[4 * length];
        chacha.processBytes(stream, 0, stream.length, stream, 0);
        ByteBuffer words = ByteBuffer.wrap(stream).order(ByteOrder.LITTLE_ENDIAN);
        long mask = bits == 32 ? 0xFFFFFFFFL : (1L << bits) - 1;
        long[] out = new long[length];
        for (int i = 0; i < length; i++) {
            out[i] = (words.getInt() & 0xFFFFFFFFL) & mask;
        }
        return out;
    }
}
