package dev.fedge.android;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import android.app.Application;
import android.app.job.JobInfo;
import android.app.job.JobScheduler;
import java.util.List;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.robolectric.RobolectricTestRunner;
import org.robolectric.RuntimeEnvironment;
import org.robolectric.annotation.Config;

/** The job the app leaves with Android: the eligibility constraints, the coordinator's retry time. */
@RunWith(RobolectricTestRunner.class)
@Config(sdk = 34)
public class SchedulingTest {
    private static List<JobInfo> pending(Application app) {
        return app.getSystemService(JobScheduler.class).getAllPendingJobs();
    }

    @Test
    public void theJobRunsOnlyWhileChargingOnWifiAndIdle() {
        Application app = RuntimeEnvironment.getApplication();
        Scheduling.schedule(app, 90_000);
        List<JobInfo> jobs = pending(app);
        assertEquals(1, jobs.size());
        JobInfo job = jobs.get(0);
        assertTrue(job.isRequireCharging());
        assertTrue(job.isRequireDeviceIdle());
        assertEquals(JobInfo.NETWORK_TYPE_UNMETERED, job.getNetworkType());
        assertEquals(90_000, job.getMinLatencyMillis());
        assertTrue(job.isPersisted());
        assertEquals(FedgeJobService.class.getName(), job.getService().getClassName());
    }

    @Test
    public void comeBackLaterReplacesTheJobAndANegativeDelayMeansNow() {
        Application app = RuntimeEnvironment.getApplication();
        Scheduling.schedule(app, 90_000);
        Scheduling.schedule(app, 5_000); // the coordinator's next "come back at T"
        assertEquals(1, pending(app).size());
        assertEquals(5_000, pending(app).get(0).getMinLatencyMillis());
        Scheduling.schedule(app, -3);
        assertEquals(0, pending(app).get(0).getMinLatencyMillis());
        Scheduling.cancel(app);
        assertEquals(0, pending(app).size());
    }
}
