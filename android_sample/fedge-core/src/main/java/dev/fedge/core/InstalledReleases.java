package dev.fedge.core;

import com.google.gson.JsonObject;
import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.StandardCopyOption;

/**
 * The model this device infers with (device_runtime/releases.py's twin): a release offered at
 * check-in is installed only for this device's population, with a sequence above the
 * installed one, signed by the key pinned at registration, and with bytes of the signed
 * digest and size; then the model file is written under its digest and current.json replaced
 * in one atomic move, the previous release kept. Anything refused is counted and never used.
 */
public final class InstalledReleases {
    /** Downloads a blob and checks its digest (FedgeClient.fetchBlob with a cache). */
    public interface Fetch {
        byte[] fetch(String url, String sha256) throws IOException, InterruptedException;
    }

    private final File folder;
    private final String publicKey;
    private final String population;
    public final String channel;
    public int installed;
    public int refused;
    public String lastRefusal = "";

    public InstalledReleases(File folder, String publicKey, String population, String channel) {
        this.folder = folder;
        this.publicKey = publicKey == null ? "" : publicKey;
        this.population = population;
        this.channel = channel;
    }

    private JsonObject state() {
        File file = new File(folder, "current.json");
        if (!file.exists()) {
            return new JsonObject();
        }
        try {
            return Json.object(new String(Files.readAllBytes(file.toPath()), StandardCharsets.UTF_8));
        } catch (IOException | ProtocolException e) {
            return new JsonObject();
        }
    }

    /** The installed release, or null. */
    public Release current() {
        JsonObject s = state();
        return s.has("current") && s.get("current").isJsonObject() ? Release.fromJson(s.getAsJsonObject("current")) : null;
    }

    /** The installed release's sequence (0: none): what the check-in reports. */
    public long sequence() {
        Release r = current();
        return r == null ? 0 : r.sequence;
    }

    /** The model file to infer with, or null (the SDK's Fedge.model()). */
    public File currentModel() {
        Release r = current();
        return r == null ? null : new File(folder, r.modelSha256 + ".tflite");
    }

    /** Verify, download and install; false (nothing changed) when refused or not to be had now. */
    public boolean install(Release offer, Fetch fetch) throws InterruptedException {
        byte[] data;
        try {
            if (publicKey.isEmpty()) {
                throw new ProtocolException("no release key was pinned at registration", "no_pinned_key");
            }
            offer.verify(publicKey, population, sequence());
            data = kept(offer.modelSha256);
            if (data == null) {
                data = fetch.fetch(offer.url, offer.modelSha256);
            }
            if (!FedgeClient.sha256Hex(data).equals(offer.modelSha256)) { // whatever the fetch checked
                throw new ProtocolException("release " + offer.releaseId + " does not hash to the signed digest",
                        "bad_blob");
            }
            if (data.length != offer.size) {
                throw new ProtocolException("release " + offer.releaseId + " is " + data.length + " bytes, not the "
                        + offer.size + " signed", "bad_release");
            }
            write(offer, data);
        } catch (ProtocolException | FedgeClient.ApiException e) {
            refused++;
            lastRefusal = e.getMessage();
            return false;
        } catch (IOException e) {
            refused++;
            lastRefusal = "download failed: " + e.getMessage();
            return false;
        }
        installed++;
        return true;
    }

    private byte[] kept(String sha) {
        File file = new File(folder, sha + ".tflite");
        try {
            byte[] data = Files.readAllBytes(file.toPath());
            return FedgeClient.sha256Hex(data).equals(sha) ? data : null;
        } catch (IOException e) {
            return null;
        }
    }

    private void write(Release offer, byte[] data) throws IOException {
        if (!folder.isDirectory() && !folder.mkdirs()) {
            throw new IOException("cannot create " + folder);
        }
        File model = new File(folder, offer.modelSha256 + ".tflite");
        if (!model.exists()) {
            File tmp = new File(folder, offer.modelSha256 + ".tmp");
            Files.write(tmp.toPath(), data);
            Files.move(tmp.toPath(), model.toPath(), StandardCopyOption.ATOMIC_MOVE);
        }
        JsonObject before = state();
        JsonObject previous = before.has("current") ? before.getAsJsonObject("current") : null;
        JsonObject next = new JsonObject();
        next.add("current", offer.toJson());
        next.add("previous", previous);
        File tmp = new File(folder, "current.json.tmp");
        Files.write(tmp.toPath(), next.toString().getBytes(StandardCharsets.UTF_8));
        Files.move(tmp.toPath(), new File(folder, "current.json").toPath(), StandardCopyOption.ATOMIC_MOVE);
        File[] files = folder.listFiles();
        for (File f : files == null ? new File[0] : files) {
            String name = f.getName();
            boolean keep = name.equals(offer.modelSha256 + ".tflite")
                    || (previous != null && name.equals(Json.string(previous, "model_sha256") + ".tflite"));
            if (name.endsWith(".tflite") && !keep && !f.delete()) {
                lastRefusal = "could not delete " + name;
            }
        }
    }
}
