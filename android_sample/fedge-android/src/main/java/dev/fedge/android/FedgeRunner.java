package dev.fedge.android;

import android.content.Context;
import android.content.SharedPreferences;
import dev.fedge.core.Backoff;
import dev.fedge.core.BlobCache;
import dev.fedge.core.Examples;
import dev.fedge.core.FedgeClient;
import dev.fedge.core.FedgeDevice;
import dev.fedge.core.InstalledReleases;
import dev.fedge.core.LocalState;
import dev.fedge.core.LocalTrainer;
import java.io.File;
import java.security.SecureRandom;
import java.util.Locale;

/**
 * One federated round on this phone, shared by the scheduled job and the "run now" button:
 * registers once (token kept in preferences), runs FedgeDevice.runOnce with the LiteRT
 * trainer, and records what happened for the status screen.
 */
final class FedgeRunner {
    static final String PREFS = "fedge";
    static final String DEFAULT_COORDINATOR = "http://10.0.2.2:8080"; // the host, seen from the emulator
    static final String DEFAULT_POPULATION = "phones";

    /** Builds the round's trainer: LiteRT on a phone; the JVM tests put a pure-Java one here. */
    interface TrainerFactory {
        LocalTrainer create(Examples data, SecureRandom random, LocalState state);
    }

    static volatile TrainerFactory trainers = (data, random, state) -> new LiteRtTrainer(data, 0.2, random, state);

    private FedgeRunner() {
    }

    /**
     * The user's privacy floor (the "dp_floor" setting): only distributed-DP rounds whose
     * devices' noise adds up to at least this many sensitivities, checked on the phone; 0: none.
     */
    static double dpFloor(SharedPreferences prefs) {
        try {
            double z = Double.parseDouble(prefs.getString("dp_floor", "0"));
            return Double.isFinite(z) && z > 0 ? z : 0.0;
        } catch (NumberFormatException e) {
            return 0.0;
        }
    }

    static SharedPreferences prefs(Context context) {
        return context.getSharedPreferences(PREFS, Context.MODE_PRIVATE);
    }

    /** The app's example store (fedge-android's ExampleStore), where the app puts what its user labels. */
    static final String EXAMPLE_STORE = "examples";

    static String storeName(Context context) {
        return prefs(context).getString("example_store", EXAMPLE_STORE);
    }

    /** What this round trains on: the example store's examples, or the pushed CSV while the store is empty. */
    static Examples localExamples(Context context) throws java.io.IOException {
        try (ExampleStore store = ExampleStore.open(context, storeName(context))) {
            Examples stored = store.examples();
            if (stored != null) {
                return stored;
            }
        }
        return Examples.loadCsv(examplesFile(context));
    }

    static File examplesFile(Context context) {
        return new File(context.getExternalFilesDir(null), "examples.csv");
    }

    /** The model releases this phone installs (in its private storage), following the "stable" channel. */
    static InstalledReleases releases(Context context) {
        SharedPreferences prefs = prefs(context);
        return new InstalledReleases(new File(context.getFilesDir(), "fedge-releases"), prefs.getString("release_key", ""),
                prefs.getString("population", DEFAULT_POPULATION), prefs.getString("release_channel", "stable"));
    }

    /** Runs one check-in (and round, if selected); returns the outcome. Call off the main thread. */
    static FedgeDevice.RoundOutcome runOnce(Context context) throws Exception {
        SharedPreferences prefs = prefs(context);
        SecureRandom random = new SecureRandom();
        FedgeClient client = new FedgeClient(prefs.getString("coordinator", DEFAULT_COORDINATOR),
                Backoff.defaults(random), Backoff.THREAD_SLEEP, 5);
        String token = prefs.getString("token", null);
        if (token == null) {
            token = client.register(prefs.getString("population", DEFAULT_POPULATION), "android-sample");
            // The release key is pinned with the token: it signs every model release this phone installs.
            prefs.edit().putString("token", token).putString("release_key", client.releaseKey()).apply();
        }
        client.setToken(token);
        Examples data = localExamples(context);
        // SCAFFOLD's c_i and personal layers must outlive this job's process: the app's own storage.
        LocalState state = new LocalState(new File(context.getFilesDir(), "fedge-state"));
        FedgeDevice device = new FedgeDevice(client, trainers.create(data, random, state),
                new BlobCache.Directory(new File(context.getCacheDir(), "fedge-blobs")),
                () -> AndroidDeviceState.read(context), () -> System.currentTimeMillis() / 1000.0, random)
                .withLocalState(state)
                .withMinDpNoise(dpFloor(prefs))
                .withReleases(releases(context));
        FedgeDevice.RoundOutcome outcome = device.runOnce(10.0);
        if (device.releases().installed > 0) {
            Fedge.notifyRelease(device.releases().current(), device.releases().currentModel());
        }
        record(context, device, outcome, client.bytesUp());
        Fedge.notifyRound(outcome.outcome, outcome.toString());
        return outcome;
    }

    private static void record(Context context, FedgeDevice device, FedgeDevice.RoundOutcome outcome, long bytesUp) {
        SharedPreferences prefs = prefs(context);
        SharedPreferences.Editor edit = prefs.edit()
                .putString("last_outcome", outcome.toString())
                .putLong("bytes_up", prefs.getLong("bytes_up", 0) + bytesUp)
                .putFloat("retry_at", (float) outcome.retryAt);
        if (device.stats.lastRound >= 0) {
            edit.putInt("last_round", device.stats.lastRound);
        }
        if (outcome.outcome.equals("uploaded")) {
            edit.putInt("uploads", prefs.getInt("uploads", 0) + 1)
                    .putString("local", String.format(Locale.US, "loss %.3f, accuracy of the global model %.3f",
                            device.stats.lastTrainLoss, device.stats.lastEvalAccuracy));
        }
        edit.apply();
    }

    private static String examplesSource(Context context) {
        try (ExampleStore store = ExampleStore.open(context, storeName(context))) {
            int n = store.count();
            return n > 0 ? n + " in the app's example store" : examplesFile(context).toString();
        }
    }

    static String status(Context context) {
        SharedPreferences p = prefs(context);
        return String.format(Locale.US,
                "device state: %s%nregistered: %s%nlast outcome: %s%nlast round: %d%nuploads: %d%n"
                        + "bytes sent: %d%nlocal: %s%nexamples: %s",
                AndroidDeviceState.read(context).toJson(), p.contains("token") ? "yes" : "no",
                p.getString("last_outcome", "-"), p.getInt("last_round", -1), p.getInt("uploads", 0),
                p.getLong("bytes_up", 0), p.getString("local", "-"), examplesSource(context));
    }
}
