package dev.fedge.android;

import android.app.job.JobParameters;
import android.app.job.JobService;
import android.util.Log;
import dev.fedge.core.Backoff;
import dev.fedge.core.FedgeDevice;

/** The scheduled round: runs on a worker thread, then schedules the next check-in. */
public final class FedgeJobService extends JobService {
    private static final String TAG = "fedge";
    private volatile Thread worker;

    @Override
    public boolean onStartJob(JobParameters params) {
        worker = new Thread(() -> {
            long nextDelayMs = 15 * 60 * 1000L;
            try {
                FedgeDevice.RoundOutcome outcome = FedgeRunner.runOnce(getApplicationContext());
                Log.i(TAG, "round: " + outcome);
                if (outcome.outcome.equals("retry")) {
                    double seconds = Backoff.untilRetryAt(outcome.retryAt, System.currentTimeMillis() / 1000.0, 6 * 3600);
                    nextDelayMs = (long) (seconds * 1000);
                } else {
                    nextDelayMs = 60 * 1000L;
                }
            } catch (Exception e) {
                Log.w(TAG, "round failed", e);
            }
            if (!Thread.currentThread().isInterrupted()) {
                Scheduling.schedule(getApplicationContext(), nextDelayMs);
                jobFinished(params, false);
            }
        }, "fedge-round");
        worker.start();
        return true; // work continues on the worker thread
    }

    @Override
    public boolean onStopJob(JobParameters params) {
        // The constraints stopped holding (unplugged, off Wi-Fi, in use): stop; the round is
        // abandoned, and the coordinator's deadline and over-selection absorb the dropout.
        Thread running = worker;
        if (running != null) {
            running.interrupt();
        }
        Scheduling.schedule(getApplicationContext(), 0);
        return false;
    }
}
