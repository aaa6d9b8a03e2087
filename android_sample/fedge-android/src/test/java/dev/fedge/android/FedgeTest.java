package dev.fedge.android;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import android.app.Application;
import android.app.job.JobScheduler;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.robolectric.RobolectricTestRunner;
import org.robolectric.RuntimeEnvironment;
import org.robolectric.annotation.Config;

/** The public API an app calls: settings checked and kept, scheduling, the example store named. */
@RunWith(RobolectricTestRunner.class)
@Config(sdk = 34)
public class FedgeTest {
    @Test
    public void configureChecksAndKeepsTheSettingsAndForgetsARegistrationOnAChange() {
        Application app = RuntimeEnvironment.getApplication();
        assertEquals("http://10.0.2.2:8080", Fedge.coordinator(app)); // the emulator's host by default
        Fedge.configure(app, "https://fl.example.com", "keyboard");
        FedgeRunner.prefs(app).edit().putString("token", "d-1.x").apply();
        Fedge.configure(app, "https://fl.example.com", "keyboard"); // the same: still registered
        assertTrue(FedgeRunner.prefs(app).contains("token"));
        Fedge.configure(app, "https://fl.example.com", "camera");
        assertFalse(FedgeRunner.prefs(app).contains("token"));
        assertEquals("camera", Fedge.population(app));
        assertThrows(IllegalArgumentException.class, () -> Fedge.configure(app, "ftp://x", "p"));
        assertThrows(IllegalArgumentException.class, () -> Fedge.configure(app, "https://x", "../p"));
        assertEquals("camera", Fedge.population(app)); // a refused call changed nothing
    }

    @Test
    public void scheduleCancelAndThePrivacyFloor() {
        Application app = RuntimeEnvironment.getApplication();
        Fedge.schedule(app);
        assertEquals(1, app.getSystemService(JobScheduler.class).getAllPendingJobs().size());
        Fedge.cancel(app);
        assertEquals(0, app.getSystemService(JobScheduler.class).getAllPendingJobs().size());
        Fedge.setMinDpNoise(app, 1.5);
        assertEquals(1.5, Fedge.minDpNoise(app), 0);
        Fedge.setMinDpNoise(app, Double.NaN);
        assertEquals(0.0, Fedge.minDpNoise(app), 0);
    }

    @Test
    public void theRoundsTrainOnTheStoreTheAppNames() {
        Application app = RuntimeEnvironment.getApplication();
        assertEquals(FedgeRunner.EXAMPLE_STORE, FedgeRunner.storeName(app));
        Fedge.setExampleStore(app, "drawn");
        assertEquals("drawn", FedgeRunner.storeName(app));
        assertThrows(IllegalArgumentException.class, () -> Fedge.setExampleStore(app, "bad name"));
        assertEquals("drawn", FedgeRunner.storeName(app));
    }
}
