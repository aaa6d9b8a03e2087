package dev.fedge.sample;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import android.app.job.JobScheduler;
import android.widget.Button;
import android.widget.EditText;
import android.widget.TextView;
import dev.fedge.android.Fedge;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.robolectric.Robolectric;
import org.robolectric.RobolectricTestRunner;
import org.robolectric.android.controller.ActivityController;
import org.robolectric.annotation.Config;

/** What a user sees: the settings, the device state and the last round; "schedule" schedules. */
@RunWith(RobolectricTestRunner.class)
@Config(sdk = 34)
public class MainActivityTest {
    @Test
    public void showsSettingsAndStatusAndSchedulesTheJob() {
        ActivityController<MainActivity> controller = Robolectric.buildActivity(MainActivity.class).setup();
        MainActivity activity = controller.get();
        EditText coordinator = activity.findViewById(R.id.coordinator);
        EditText population = activity.findViewById(R.id.population);
        assertEquals("http://10.0.2.2:8080", coordinator.getText().toString());
        assertEquals("phones", population.getText().toString());
        String shown = ((TextView) activity.findViewById(R.id.status)).getText().toString();
        assertTrue(shown, shown.contains("registered: no") && shown.contains("last outcome: -")
                && shown.contains("device state: {"));

        coordinator.setText("http://10.0.2.2:9000");
        EditText floor = activity.findViewById(R.id.dp_floor);
        assertEquals(0.0, Fedge.minDpNoise(activity), 0); // no floor until the user sets one
        floor.setText("1.5");
        ((Button) activity.findViewById(R.id.schedule)).performClick();
        assertEquals("http://10.0.2.2:9000", Fedge.coordinator(activity));
        assertEquals(1.5, Fedge.minDpNoise(activity), 0); // what the next job's device checks
        floor.setText("-3");
        ((Button) activity.findViewById(R.id.schedule)).performClick();
        assertEquals(0.0, Fedge.minDpNoise(activity), 0);
        assertEquals(1, activity.getSystemService(JobScheduler.class).getAllPendingJobs().size());
        shown = ((TextView) activity.findViewById(R.id.status)).getText().toString();
        assertTrue(shown, shown.startsWith("scheduled: runs when charging, on Wi-Fi and idle"));
        coordinator.setText("not a url"); // refused by the public API, shown, nothing saved
        ((Button) activity.findViewById(R.id.schedule)).performClick();
        shown = ((TextView) activity.findViewById(R.id.status)).getText().toString();
        assertTrue(shown, shown.startsWith("settings not saved: the coordinator is an http"));
        assertEquals("http://10.0.2.2:9000", Fedge.coordinator(activity));
    }
}
