package dev.fedge.core;

import com.google.gson.JsonObject;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import org.bouncycastle.crypto.params.Ed25519PublicKeyParameters;
import org.bouncycastle.crypto.signers.Ed25519Signer;

/**
 * A model release offered at check-in (protocol/releases.py): the rollout hash that decides
 * which devices get it, and the check of the coordinator's Ed25519 signature over
 * (population, channel, release id, sequence, model digest) with the key pinned at
 * registration. Ed25519 through BouncyCastle: Android has it only from API 33.
 */
public final class Release {
    public static final int BUCKETS = 10_000;
    private static final int MAX_NAME = 64;

    public final String releaseId;
    public final String population;
    public final String channel;
    public final long sequence;
    public final String modelSha256;
    public final long size;
    public final String url;
    public final String signature;

    private Release(JsonObject raw) {
        releaseId = bounded(raw, "release_id", MAX_NAME);
        population = bounded(raw, "population", MAX_NAME);
        channel = bounded(raw, "channel", MAX_NAME);
        sequence = whole(raw, "sequence", 1, 1L << 53);
        modelSha256 = bounded(raw, "model_sha256", 64);
        size = whole(raw, "size", 1, 1L << 40);
        url = bounded(raw, "url", 4096);
        signature = bounded(raw, "signature", 128);
        if (modelSha256.length() != 64 || signature.length() != 128) {
            throw new ProtocolException("a release names a SHA-256 digest and a 64-byte signature", "bad_request");
        }
    }

    public static Release fromJson(JsonObject raw) {
        return new Release(raw);
    }

    /** The offer as the check-in carried it (kept in current.json). */
    public JsonObject toJson() {
        JsonObject out = new JsonObject();
        out.addProperty("release_id", releaseId);
        out.addProperty("population", population);
        out.addProperty("channel", channel);
        out.addProperty("sequence", sequence);
        out.addProperty("model_sha256", modelSha256);
        out.addProperty("size", size);
        out.addProperty("url", url);
        out.addProperty("signature", signature);
        return out;
    }

    private static String bounded(JsonObject raw, String name, int maxLen) {
        String value = Json.string(raw, name);
        if (value.length() > maxLen) {
            throw new ProtocolException("field '" + name + "' is longer than " + maxLen, "bad_request");
        }
        return value;
    }

    private static long whole(JsonObject raw, String name, long lo, long hi) {
        double value = Json.number(raw, name, null);
        if (value != Math.rint(value) || value < lo || value > hi) {
            throw new ProtocolException("field '" + name + "' must be a whole number in [" + lo + ", " + hi + "]",
                    "bad_request");
        }
        return (long) value;
    }

    /** The device's bucket in [0, 10000) for a release: stable, salted by the release. */
    public static int rolloutBucket(String releaseId, String deviceId) {
        byte[] digest = sha256(("fedge-rollout\0" + releaseId + "\0" + deviceId).getBytes(StandardCharsets.UTF_8));
        long high = 0;
        for (int i = 0; i < 8; i++) {
            high = (high << 8) | (digest[i] & 0xff);
        }
        return (int) Long.remainderUnsigned(high, BUCKETS);
    }

    public static boolean inRollout(String releaseId, String deviceId, double percent) {
        return rolloutBucket(releaseId, deviceId) < Math.round(percent * BUCKETS / 100);
    }

    /** The bytes the coordinator signs. */
    public static byte[] statement(String population, String channel, String releaseId, long sequence,
                                   String modelSha256) {
        String joined = "fedge-release-v1\0" + population + "\0" + channel + "\0" + releaseId + "\0" + sequence
                + "\0" + modelSha256;
        return joined.getBytes(StandardCharsets.UTF_8);
    }

    /**
     * Throws ProtocolException unless this offer is for this device's population, newer than
     * what is installed, and signed by the pinned key: other_population, old_release or
     * bad_signature, the codes the Python device uses.
     */
    public void verify(String publicKeyHex, String devicePopulation, long installedSequence) {
        if (!population.equals(devicePopulation)) {
            throw new ProtocolException("a release for population '" + population + "', not this device's '"
                    + devicePopulation + "'", "other_population");
        }
        if (sequence <= installedSequence) {
            throw new ProtocolException("release " + releaseId + " has sequence " + sequence
                    + ", not above the installed " + installedSequence + ": a replayed or older release", "old_release");
        }
        boolean valid;
        try {
            Ed25519Signer verifier = new Ed25519Signer();
            verifier.init(false, new Ed25519PublicKeyParameters(hex(publicKeyHex), 0));
            byte[] message = statement(population, channel, releaseId, sequence, modelSha256);
            verifier.update(message, 0, message.length);
            valid = verifier.verifySignature(hex(signature));
        } catch (IllegalArgumentException e) {
            valid = false;
        }
        if (!valid) {
            throw new ProtocolException("release " + releaseId + ": the signature does not verify with the pinned key",
                    "bad_signature");
        }
    }

    static byte[] hex(String text) {
        if (text.length() % 2 != 0) {
            throw new IllegalArgumentException("odd hex length");
        }
        byte[] out = new byte[text.length() / 2];
        for (int i = 0; i < out.length; i++) {
            int hi = Character.digit(text.charAt(2 * i), 16);
            int lo = Character.digit(text.charAt(2 * i + 1), 16);
            if (hi < 0 || lo < 0) {
                throw new IllegalArgumentException("not hex");
            }
            out[i] = (byte) (hi * 16 + lo);
        }
        return out;
    }

    private static byte[] sha256(byte[] data) {
        try {
            return MessageDigest.getInstance("SHA-256").digest(data);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
