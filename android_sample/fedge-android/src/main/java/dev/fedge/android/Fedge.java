package dev.fedge.android;

import android.content.Context;
import android.content.SharedPreferences;

/**
 * fedge's public API for an app: where the coordinator is, which population this install
 * joins, the examples it trains on, and when it takes part. Everything else (the scheduled job,
 * the device state, the LiteRT trainer, registration) stays inside the library.
 *
 * <pre>
 *   Fedge.configure(context, "https://fl.example.com", "keyboard");
 *   try (ExampleStore store = Fedge.examples(context, "next-word")) { store.add(features, label); }
 *   Fedge.setExampleStore(context, "next-word");   // what the rounds train on
 *   Fedge.schedule(context);                        // only while charging, on Wi-Fi and idle
 * </pre>
 */
public final class Fedge {
    /** What became of one check-in: its outcome (uploaded, retry, rejected, ...) and a detail. */
    public interface RoundListener {
        void onRound(String outcome, String detail);
    }

    private static volatile RoundListener listener;
    private static volatile ReleaseListener releases;

    private Fedge() {
    }

    /**
     * The coordinator's URL and the population this install registers in; a change of either
     * forgets the device's registration (it registers again at its next check-in).
     */
    public static void configure(Context context, String coordinator, String population) {
        if (coordinator == null || !(coordinator.startsWith("http://") || coordinator.startsWith("https://"))) {
            throw new IllegalArgumentException("the coordinator is an http:// or https:// URL");
        }
        if (population == null || !population.matches("[A-Za-z0-9][A-Za-z0-9_-]{0,63}")) {
            throw new IllegalArgumentException("a population name is 1 to 64 letters, digits, '-' or '_'");
        }
        SharedPreferences prefs = FedgeRunner.prefs(context);
        boolean changed = !coordinator.equals(prefs.getString("coordinator", ""))
                || !population.equals(prefs.getString("population", ""));
        SharedPreferences.Editor edit = prefs.edit().putString("coordinator", coordinator)
                .putString("population", population);
        if (changed) {
            edit.remove("token");
        }
        edit.apply();
    }

    public static String coordinator(Context context) {
        return FedgeRunner.prefs(context).getString("coordinator", FedgeRunner.DEFAULT_COORDINATOR);
    }

    public static String population(Context context) {
        return FedgeRunner.prefs(context).getString("population", FedgeRunner.DEFAULT_POPULATION);
    }

    /** The example store {@code name} (see {@link ExampleStore}; close it after use). */
    public static ExampleStore examples(Context context, String name) {
        return ExampleStore.open(context, name);
    }

    /** Which example store the rounds train on (default "examples"). */
    public static void setExampleStore(Context context, String name) {
        ExampleStore.open(context, name).close(); // checks the name
        FedgeRunner.prefs(context).edit().putString("example_store", name).apply();
    }

    /**
     * This device's own privacy floor: it takes part only in distributed-DP rounds whose devices'
     * noise adds up to at least {@code noiseMultiplier} sensitivities (0: none).
     */
    public static void setMinDpNoise(Context context, double noiseMultiplier) {
        FedgeRunner.prefs(context).edit()
                .putString("dp_floor", noiseMultiplier > 0 && Double.isFinite(noiseMultiplier)
                        ? Double.toString(noiseMultiplier) : "")
                .apply();
    }

    public static double minDpNoise(Context context) {
        return FedgeRunner.dpFloor(FedgeRunner.prefs(context));
    }

    /** Takes part from now on, whenever the phone is charging, on an unmetered network and idle. */
    public static void schedule(Context context) {
        Scheduling.schedule(context.getApplicationContext(), 0);
    }

    /** Takes no more part (a scheduled check-in is cancelled). */
    public static void cancel(Context context) {
        Scheduling.cancel(context.getApplicationContext());
    }

    /**
     * One check-in now, whatever the phone's state (for demos and tests); blocks: call it off
     * the main thread. Returns the outcome as the status screen shows it.
     */
    public static String runNow(Context context) throws Exception {
        return FedgeRunner.runOnce(context.getApplicationContext()).toString();
    }

    /** Called after every check-in the library makes (on its worker thread); null: none. */
    public static void setRoundListener(RoundListener roundListener) {
        listener = roundListener;
    }

    static void notifyRound(String outcome, String detail) {
        RoundListener l = listener;
        if (l != null) {
            l.onRound(outcome, detail);
        }
    }

    /**
     * The model file to infer with: the coordinator's newest release this phone installed
     * (signed, verified, swapped in atomically), or null before the first. Open it with
     * {@link ReleasedModel#open}.
     */
    public static java.io.File model(Context context) {
        return FedgeRunner.releases(context.getApplicationContext()).currentModel();
    }

    /** Which release {@link #model} is (id, sequence, channel), or null. */
    public static dev.fedge.core.Release release(Context context) {
        return FedgeRunner.releases(context.getApplicationContext()).current();
    }

    /** Called when a new release is installed (on the library's worker thread); null: none. */
    public static void setReleaseListener(ReleaseListener releaseListener) {
        releases = releaseListener;
    }

    static void notifyRelease(dev.fedge.core.Release release, java.io.File model) {
        ReleaseListener l = releases;
        if (l != null) {
            l.onRelease(release, model);
        }
    }

    /** A few lines for a status screen: the device state, registration, the last round, the examples. */
    public static String status(Context context) {
        return FedgeRunner.status(context);
    }
}
