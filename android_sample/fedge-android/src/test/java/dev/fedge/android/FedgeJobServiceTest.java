package dev.fedge.android;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.junit.Assume.assumeTrue;
import static org.robolectric.Shadows.shadowOf;

import android.app.Application;
import android.app.job.JobInfo;
import android.app.job.JobScheduler;
import android.content.SharedPreferences;
import android.os.BatteryManager;
import android.content.Intent;
import dev.fedge.core.Examples;
import dev.fedge.core.jvm.SoftmaxRegressionTrainer;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.List;
import org.junit.Before;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.robolectric.Robolectric;
import org.robolectric.RobolectricTestRunner;
import org.robolectric.RuntimeEnvironment;
import org.robolectric.annotation.Config;
import org.robolectric.shadows.ShadowJobService;

/**
 * The scheduled job against a live `fedge serve` the Python test started (its URL, a
 * population with a task and one without, and the examples come as system properties): it
 * runs one round through FedgeRunner, records it for the status screen, schedules the next
 * check-in and finishes the job. A pure-Java trainer stands in for LiteRT, whose native
 * library does not load on the JVM.
 */
@RunWith(RobolectricTestRunner.class)
@Config(sdk = 34)
public class FedgeJobServiceTest {
    private Application app;

    @Before
    public void setUp() throws Exception {
        String examples = System.getProperty("fedge.examples");
        assumeTrue("needs a live coordinator (tests/android_sample/test_android_app.py)", examples != null);
        app = RuntimeEnvironment.getApplication();
        Files.copy(Paths.get(examples), FedgeRunner.examplesFile(app).toPath(), StandardCopyOption.REPLACE_EXISTING);
        FedgeRunner.trainers = (data, random, state) -> new SoftmaxRegressionTrainer(data, 0.2, random);
        // Plugged in, on Wi-Fi: the state the coordinator's eligibility rule checks again.
        app.sendStickyBroadcast(new Intent(Intent.ACTION_BATTERY_CHANGED)
                .putExtra(BatteryManager.EXTRA_PLUGGED, BatteryManager.BATTERY_PLUGGED_AC)
                .putExtra(BatteryManager.EXTRA_LEVEL, 90).putExtra(BatteryManager.EXTRA_SCALE, 100));
    }

    private SharedPreferences settings(String population) {
        SharedPreferences prefs = FedgeRunner.prefs(app);
        prefs.edit().putString("coordinator", System.getProperty("fedge.coordinator"))
                .putString("population", population).apply();
        return prefs;
    }

    private static ShadowJobService runJob() throws InterruptedException {
        FedgeJobService service = Robolectric.setupService(FedgeJobService.class);
        assertTrue(service.onStartJob(null)); // the work goes on on the job's own thread
        ShadowJobService shadow = shadowOf(service);
        for (int i = 0; i < 1200 && !shadow.getIsJobFinished(); i++) {
            Thread.sleep(100);
        }
        return shadow;
    }

    private List<JobInfo> pending() {
        return app.getSystemService(JobScheduler.class).getAllPendingJobs();
    }

    @Test
    public void aRoundIsTrainedUploadedRecordedAndTheNextCheckInScheduled() throws Exception {
        SharedPreferences prefs = settings(System.getProperty("fedge.population"));
        ShadowJobService job = runJob();
        assertTrue("the job finished", job.getIsJobFinished());
        assertFalse(job.getIsRescheduleNeeded());
        String outcome = prefs.getString("last_outcome", "");
        assertTrue(outcome, outcome.startsWith("uploaded"));
        assertEquals(1, prefs.getInt("uploads", 0));
        assertTrue(prefs.getLong("bytes_up", 0) > 0);
        assertTrue(prefs.contains("token")); // registered once, kept for the next job
        assertEquals(1, pending().size());
        assertEquals(60_000, pending().get(0).getMinLatencyMillis()); // after a round: a minute
        String status = FedgeRunner.status(app);
        assertTrue(status, status.contains("uploads: 1") && status.contains("registered: yes"));
    }

    @Test
    public void aRoundTrainsOnTheAppsExampleStore() throws Exception {
        // The examples the app put in its store through the public API, no CSV at all.
        Examples rows = Examples.loadCsv(FedgeRunner.examplesFile(app));
        assertTrue(FedgeRunner.examplesFile(app).delete());
        try (ExampleStore store = Fedge.examples(app, "digits-drawn")) {
            store.clear();
            for (int i = 0; i < rows.y.length; i++) {
                store.add(rows.x[i], rows.y[i]);
            }
        }
        Fedge.setExampleStore(app, "digits-drawn");
        java.util.List<String> heard = new java.util.concurrent.CopyOnWriteArrayList<>();
        Fedge.setRoundListener((what, detail) -> heard.add(what));
        SharedPreferences prefs = settings(System.getProperty("fedge.store_population"));
        ShadowJobService job = runJob();
        Fedge.setRoundListener(null);
        assertTrue(job.getIsJobFinished());
        String outcome = prefs.getString("last_outcome", "");
        assertTrue(outcome, outcome.startsWith("uploaded"));
        assertEquals(java.util.Collections.singletonList("uploaded"), heard);
        String status = FedgeRunner.status(app);
        assertTrue(status, status.contains("examples: " + rows.y.length + " in the app's example store"));
    }

    @Test
    public void withNothingToDoItComesBackWhenTheCoordinatorSays() throws Exception {
        SharedPreferences prefs = settings(System.getProperty("fedge.idle_population"));
        ShadowJobService job = runJob();
        assertTrue(job.getIsJobFinished());
        String outcome = prefs.getString("last_outcome", "");
        assertTrue(outcome, outcome.startsWith("retry"));
        assertEquals(0, prefs.getInt("uploads", 0));
        long delay = pending().get(0).getMinLatencyMillis();
        assertTrue("the coordinator's retry time, not the 15 min fallback: " + delay, delay > 0 && delay < 15 * 60_000);
    }
}
