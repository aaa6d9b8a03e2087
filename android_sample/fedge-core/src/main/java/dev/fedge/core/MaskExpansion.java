package dev.fedge.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.security.GeneralSecurityException;
import javax.crypto.Cipher;
import javax.crypto.spec.ChaCha20ParameterSpec;
import javax.crypto.spec.SecretKeySpec;

/**
 * SecAgg mask expansion (protocol/secagg/prg.py): the ChaCha20 key stream of a 32-byte seed
 * with nonce 0 and counter 0, read as little-endian uint32 words, each reduced mod 2^bits.
 * The cipher is the platform's (JDK 11+; on Android, a provider with ChaCha20 such as
 * Conscrypt or Tink), never a hand-written one.
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
        byte[] stream;
        try {
            Cipher chacha = Cipher.getInstance("ChaCha20");
            chacha.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(seed, "ChaCha20"), new ChaCha20ParameterSpec(new byte[12], 0));
            stream = chacha.doFinal(new byte[4 * length]);
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("ChaCha20 is not available on this platform", e);
        }
        ByteBuffer words = ByteBuffer.wrap(stream).order(ByteOrder.LITTLE_ENDIAN);
        long mask = bits == 32 ? 0xFFFFFFFFL : (1L << bits) - 1;
        long[] out = new long[length];
        for (int i = 0; i < length; i++) {
            out[i] = (words.getInt() & 0xFFFFFFFFL) & mask;
        }
        return out;
    }
}
