package dev.fedge.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;

import com.google.gson.JsonObject;
import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import org.bouncycastle.crypto.params.Ed25519PrivateKeyParameters;
import org.bouncycastle.crypto.signers.Ed25519Signer;
import org.junit.Test;

/** Installing releases: only signed, newer, own-population offers with the signed bytes; atomic; the previous kept. */
public class InstalledReleasesTest {
    private static final byte[] SEED = new byte[32];

    static {
        for (int i = 0; i < 32; i++) {
            SEED[i] = (byte) i; // the golden file's key
        }
    }

    private static Release offer(String id, long sequence, byte[] model, String population) {
        String sha = FedgeClient.sha256Hex(model);
        byte[] statement = Release.statement(population, "stable", id, sequence, sha);
        Ed25519Signer signer = new Ed25519Signer();
        signer.init(true, new Ed25519PrivateKeyParameters(SEED, 0));
        signer.update(statement, 0, statement.length);
        JsonObject raw = new JsonObject();
        raw.addProperty("release_id", id);
        raw.addProperty("population", population);
        raw.addProperty("channel", "stable");
        raw.addProperty("sequence", sequence);
        raw.addProperty("model_sha256", sha);
        raw.addProperty("size", model.length);
        raw.addProperty("url", "/v1/blobs/" + sha);
        raw.addProperty("signature", Golden.hex(signer.generateSignature()));
        return Release.fromJson(raw);
    }

    @Test
    public void installsVerifiedReleasesKeepsThePreviousAndRefusesTheRest() throws Exception {
        String key = Golden.load("releases.json").getAsJsonObject().get("public_key").getAsString();
        File dir = Files.createTempDirectory("fedge-releases").toFile();
        InstalledReleases releases = new InstalledReleases(dir, key, "phones", "stable");
        byte[] a = "model A".getBytes(StandardCharsets.UTF_8);
        byte[] b = "model B".getBytes(StandardCharsets.UTF_8);
        assertNull(releases.current());
        assertTrue(releases.install(offer("r-1", 1, a, "phones"), (url, sha) -> a));
        assertEquals(1, releases.sequence());
        assertArrayEquals(a, Files.readAllBytes(releases.currentModel().toPath()));
        // Replayed, another population's, tampered bytes, another key: refused, nothing changes.
        assertFalse(releases.install(offer("r-1", 1, a, "phones"), (url, sha) -> a));
        assertFalse(releases.install(offer("r-2", 2, b, "other"), (url, sha) -> b));
        assertFalse(releases.install(offer("r-2", 2, b, "phones"), (url, sha) -> a));
        InstalledReleases wrongKey = new InstalledReleases(dir, "11".repeat(32), "phones", "stable");
        assertFalse(wrongKey.install(offer("r-2", 2, b, "phones"), (url, sha) -> b));
        assertEquals(4, releases.refused + wrongKey.refused);
        assertEquals("r-1", releases.current().releaseId);
        assertTrue(releases.install(offer("r-2", 2, b, "phones"), (url, sha) -> b));
        assertEquals("r-2", releases.current().releaseId);
        // A rollback (a newer release of A's model) installs the copy kept on disk: no download.
        assertTrue(releases.install(offer("r-3", 3, a, "phones"), (url, sha) -> {
            throw new AssertionError("downloaded a model kept on disk");
        }));
        assertArrayEquals(a, Files.readAllBytes(releases.currentModel().toPath()));
        assertEquals(3, releases.installed);
    }
}
