package dev.fedge.core.jvm;

import dev.fedge.core.Backoff;
import dev.fedge.core.BlobCache;
import dev.fedge.core.DeviceState;
import dev.fedge.core.Examples;
import dev.fedge.core.FedgeClient;
import dev.fedge.core.FedgeDevice;
import java.io.File;
import java.nio.file.Files;
import java.util.HashMap;
import java.util.Map;
import java.util.Random;

/**
 * A JVM device for the integration test: the Java core with the pure-Java trainer, on a
 * CSV of examples (features..., label). Usage:
 * JvmDevice --coordinator URL --population P --data FILE.csv --rounds N [--timeout-s S] [--seed S]
 */
public final class JvmDevice {
    private JvmDevice() {
    }

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = new HashMap<>();
        for (int i = 0; i + 1 < argv.length; i += 2) {
            args.put(argv[i].replaceFirst("^--", ""), argv[i + 1]);
        }
        for (String required : new String[] {"coordinator", "population", "data", "rounds"}) {
            if (!args.containsKey(required)) {
                System.err.println("missing --" + required);
                System.exit(2);
            }
        }
        Examples data = Examples.loadCsv(new File(args.get("data")));
        Random random = new Random(Long.parseLong(args.getOrDefault("seed", "0")));
        FedgeClient client = new FedgeClient(args.get("coordinator"), Backoff.defaults(random), Backoff.THREAD_SLEEP, 5);
        client.register(args.get("population"), "jvm-device");
        BlobCache cache = new BlobCache.Directory(Files.createTempDirectory("fedge-jvm-cache").toFile());
        DeviceState state = new DeviceState(true, true, true, 1.0, 1024, "jvm", System.getProperty("java.version"));
        FedgeDevice device = new FedgeDevice(client, new SoftmaxRegressionTrainer(data, 0.2, random), cache,
                () -> state, () -> System.currentTimeMillis() / 1000.0, random);
        if (args.containsKey("state-dir")) { // c_i survives this process, as in the app's jobs
            device.withLocalState(new dev.fedge.core.LocalState(new File(args.get("state-dir"))));
        }
        if (args.containsKey("min-dp-noise-multiplier")) { // this device's own privacy floor
            device.withMinDpNoise(Double.parseDouble(args.get("min-dp-noise-multiplier")));
        }
        if (args.containsKey("release-dir")) { // take model releases into this folder
            device.withReleases(new dev.fedge.core.InstalledReleases(new File(args.get("release-dir")),
                    client.releaseKey(), args.get("population"), "stable"));
        }
        double deadline = System.currentTimeMillis() / 1000.0 + Double.parseDouble(args.getOrDefault("timeout-s", "120"));
        int evaluations = Integer.parseInt(args.getOrDefault("evaluations", "0"));
        device.runUntil(Integer.parseInt(args.get("rounds")), evaluations, deadline, 5.0, Backoff.THREAD_SLEEP,
                outcome -> System.out.println("round " + device.stats.lastRound + ": " + outcome
                        + (outcome.outcome.equals("uploaded")
                        ? String.format(" local accuracy of the global model %.3f", device.stats.lastEvalAccuracy) : "")));
        System.out.printf("java device: uploads %d, abandoned %d, rejected %d, bytes up %d (%.1f%% of float32)%n",
                device.stats.uploads, device.stats.abandoned, device.stats.rejected, device.stats.bytesUp,
                100.0 * device.stats.bytesUp / Math.max(1, device.stats.float32Bytes));
        System.out.printf("java device: evaluations %d, unfinished %d, delta downloads %d%s%n", device.stats.evaluations,
                device.stats.unfinished, device.stats.deltaDownloads,
                device.stats.lastDeltaFailure.isEmpty() ? "" : " (last failure: " + device.stats.lastDeltaFailure + ")");
        if (device.releases() != null) { // a few more check-ins, in which releases are offered
            for (int i = 0; i < Integer.parseInt(args.getOrDefault("release-checkins", "2")); i++) {
                device.runOnce(0);
            }
            dev.fedge.core.Release r = device.releases().current();
            System.out.printf("java device: release %s sequence %d installed %d refused %d%s%n",
                    r == null ? "none" : r.releaseId, r == null ? 0 : r.sequence, device.releases().installed,
                    device.releases().refused, device.releases().lastRefusal.isEmpty() ? ""
                    : " (" + device.releases().lastRefusal + ")");
        }
        if (args.containsKey("control-out")) { // SCAFFOLD: this device's control variates, for the test to compare
            StringBuilder out = new StringBuilder();
            for (Map.Entry<String, float[]> e : device.kept.controls.entrySet()) {
                java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(4 * e.getValue().length)
                        .order(java.nio.ByteOrder.LITTLE_ENDIAN);
                for (float v : e.getValue()) {
                    b.putFloat(v);
                }
                StringBuilder hex = new StringBuilder();
                for (byte x : b.array()) {
                    hex.append(String.format("%02x", x));
                }
                out.append(e.getKey()).append(' ').append(hex).append('\n');
            }
            Files.write(new File(args.get("control-out")).toPath(), out.toString().getBytes("UTF-8"));
        }
        System.exit(device.stats.uploads >= Integer.parseInt(args.get("rounds"))
                && device.stats.evaluations >= evaluations ? 0 : 1);
    }
}
