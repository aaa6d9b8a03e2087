package dev.fedge.android;

import android.app.job.JobInfo;
import android.app.job.JobScheduler;
import android.content.ComponentName;
import android.content.Context;

/**
 * Eligibility the Android way: the platform starts the job only while the phone is
 * charging, on an unmetered network (Wi-Fi), and idle, so training never costs the user
 * battery, data or responsiveness. The coordinator's own rule checks the same state again.
 */
final class Scheduling {
    private static final int JOB_ID = 4242;

    private Scheduling() {
    }

    /** Schedules the next check-in no earlier than {@code delayMs} from now (the coordinator's "come back at T"). */
    static void schedule(Context context, long delayMs) {
        JobInfo job = new JobInfo.Builder(JOB_ID, new ComponentName(context, FedgeJobService.class))
                .setRequiresCharging(true)
                .setRequiredNetworkType(JobInfo.NETWORK_TYPE_UNMETERED)
                .setRequiresDeviceIdle(true)
                .setMinimumLatency(Math.max(0, delayMs))
                .setPersisted(true)
                .build();
        context.getSystemService(JobScheduler.class).schedule(job);
    }

    static void cancel(Context context) {
        context.getSystemService(JobScheduler.class).cancel(JOB_ID);
    }
}
