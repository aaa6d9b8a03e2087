package dev.fedge.core.secagg;

import dev.fedge.core.ProtocolException;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.util.Arrays;
import org.bouncycastle.crypto.InvalidCipherTextException;
import org.bouncycastle.crypto.agreement.X25519Agreement;
import org.bouncycastle.crypto.digests.SHA256Digest;
import org.bouncycastle.crypto.generators.HKDFBytesGenerator;
import org.bouncycastle.crypto.modes.ChaCha20Poly1305;
import org.bouncycastle.crypto.params.AEADParameters;
import org.bouncycastle.crypto.params.HKDFParameters;
import org.bouncycastle.crypto.params.KeyParameter;
import org.bouncycastle.crypto.params.X25519PrivateKeyParameters;
import org.bouncycastle.crypto.params.X25519PublicKeyParameters;

/**
 * Key agreement, key derivation and sealing for SecAgg (protocol/secagg/crypto.py), all from
 * Bouncy Castle's lightweight API so the same code runs on a JVM and on Android from API 26
 * (the platform's X25519 and ChaCha20-Poly1305 arrive only in later Android releases).
 *
 * <p>Every derived key is HKDF-SHA256 (no salt) of the X25519 shared secret, with info
 * {@code "fedge-secagg/1/" + purpose + "/" + context}, the context naming task and round.
 */
public final class SecAggCrypto {
    public static final int KEY_BYTES = 32;
    public static final int NONCE_BYTES = 12;
    public static final int TAG_BYTES = 16;
    public static final String PURPOSE_SHARES = "shares";
    public static final String PURPOSE_MASK = "mask";

    private SecAggCrypto() {
    }

    /** An X25519 key pair, raw 32-byte encodings. */
    public static final class KeyPair {
        public final byte[] privateKey;
        public final byte[] publicKey;

        public KeyPair(byte[] privateKey, byte[] publicKey) {
            this.privateKey = privateKey.clone();
            this.publicKey = publicKey.clone();
        }
    }

    public static KeyPair generate(SecureRandom random) {
        X25519PrivateKeyParameters key = new X25519PrivateKeyParameters(random);
        return new KeyPair(key.getEncoded(), key.generatePublicKey().getEncoded());
    }

    public static byte[] publicOf(byte[] privateKey) {
        requireLength(privateKey, KEY_BYTES, "an X25519 private key");
        return new X25519PrivateKeyParameters(privateKey, 0).generatePublicKey().getEncoded();
    }

    /** The 32-byte key both ends derive from (my private, their public), bound to purpose and context. */
    public static byte[] agree(byte[] privateKey, byte[] peerPublic, byte[] context, String purpose) {
        requireLength(privateKey, KEY_BYTES, "an X25519 private key");
        requireLength(peerPublic, KEY_BYTES, "an X25519 public key");
        byte[] shared = new byte[KEY_BYTES];
        X25519Agreement agreement = new X25519Agreement();
        agreement.init(new X25519PrivateKeyParameters(privateKey, 0));
        try {
            agreement.calculateAgreement(new X25519PublicKeyParameters(peerPublic, 0), shared, 0);
        } catch (IllegalStateException e) { // a low-order point: the shared secret would be all zeros
            throw new ProtocolException("key agreement failed: " + e.getMessage(), "bad_key");
        }
        ByteArrayOutputStream info = new ByteArrayOutputStream();
        byte[] prefix = ("fedge-secagg/1/" + purpose + "/").getBytes(StandardCharsets.US_ASCII);
        info.write(prefix, 0, prefix.length);
        info.write(context, 0, context.length);
        HKDFBytesGenerator hkdf = new HKDFBytesGenerator(new SHA256Digest());
        hkdf.init(new HKDFParameters(shared, null, info.toByteArray()));
        byte[] key = new byte[KEY_BYTES];
        hkdf.generateBytes(key, 0, KEY_BYTES);
        Arrays.fill(shared, (byte) 0);
        return key;
    }

    /** nonce (12 random bytes) || ChaCha20-Poly1305(key, nonce, plaintext, aad). */
    public static byte[] seal(byte[] key, byte[] plaintext, byte[] aad, SecureRandom random) {
        byte[] nonce = new byte[NONCE_BYTES];
        random.nextBytes(nonce);
        ChaCha20Poly1305 cipher = new ChaCha20Poly1305();
        cipher.init(true, new AEADParameters(new KeyParameter(key), 8 * TAG_BYTES, nonce, aad));
        byte[] out = new byte[NONCE_BYTES + cipher.getOutputSize(plaintext.length)];
        System.arraycopy(nonce, 0, out, 0, NONCE_BYTES);
        int n = cipher.processBytes(plaintext, 0, plaintext.length, out, NONCE_BYTES);
        try {
            cipher.doFinal(out, NONCE_BYTES + n);
        } catch (InvalidCipherTextException e) {
            throw new IllegalStateException(e); // encryption does not check a tag
        }
        return out;
    }

    public static byte[] open(byte[] key, byte[] sealed, byte[] aad) {
        if (sealed.length < NONCE_BYTES + TAG_BYTES) {
            throw new ProtocolException("sealed message is too short", "bad_ciphertext");
        }
        ChaCha20Poly1305 cipher = new ChaCha20Poly1305();
        cipher.init(false, new AEADParameters(new KeyParameter(key), 8 * TAG_BYTES,
                Arrays.copyOf(sealed, NONCE_BYTES), aad));
        byte[] out = new byte[cipher.getOutputSize(sealed.length - NONCE_BYTES)];
        try {
            int n = cipher.processBytes(sealed, NONCE_BYTES, sealed.length - NONCE_BYTES, out, 0);
            n += cipher.doFinal(out, n);
            return n == out.length ? out : Arrays.copyOf(out, n);
        } catch (InvalidCipherTextException e) {
            throw new ProtocolException("sealed message failed authentication", "bad_ciphertext");
        }
    }

    private static void requireLength(byte[] data, int length, String what) {
        if (data == null || data.length != length) {
            throw new ProtocolException(what + " is " + length + " bytes", "bad_key");
        }
    }
}
