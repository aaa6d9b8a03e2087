package dev.fedge.sample;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import android.app.job.JobScheduler;
import android.widget.Button;
import android.widget.EditText;
import android.widget.TextView;
import android.widget.LinearLayout;
import dev.fedge.android.ExampleStore;
import dev.fedge.android.Fedge;
import dev.fedge.core.Examples;
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

    @Test
    public void classifyingBeforeAnyReleaseSaysSoAndNamesNoModel() {
        MainActivity activity = Robolectric.buildActivity(MainActivity.class).setup().get();
        TextView prediction = activity.findViewById(R.id.prediction);
        ((Button) activity.findViewById(R.id.classify)).performClick();
        assertEquals("draw a digit first", prediction.getText().toString());
        DrawingPad pad = activity.findViewById(R.id.pad);
        pad.layout(0, 0, 320, 320);
        pad.addPoint(160f, 0f);
        pad.addPoint(160f, 320f);
        pad.endStroke();
        ((Button) activity.findViewById(R.id.classify)).performClick();
        assertTrue(prediction.getText().toString(), prediction.getText().toString().startsWith(
                "no model release installed yet"));
        assertEquals(null, Fedge.model(activity));
        assertEquals(null, Fedge.release(activity));
    }

    @Test
    public void aDrawingTappedWithItsLabelGoesToTheExampleStore() {
        MainActivity activity = Robolectric.buildActivity(MainActivity.class).setup().get();
        try (ExampleStore store = Fedge.examples(activity, MainActivity.STORE)) {
            store.clear();
        }
        DrawingPad pad = activity.findViewById(R.id.pad);
        pad.layout(0, 0, 320, 320);
        TextView collected = activity.findViewById(R.id.collected);
        activity.store(7); // nothing drawn yet: nothing stored
        assertEquals("draw a digit first", collected.getText().toString());
        pad.addPoint(160f, 0f);
        pad.addPoint(160f, 320f);
        pad.endStroke();
        LinearLayout labels = activity.findViewById(R.id.labels);
        Button seven = (Button) ((LinearLayout) labels.getChildAt(1)).getChildAt(2);
        assertEquals("7", seven.getText().toString());
        seven.performClick();
        assertTrue(pad.isEmpty()); // cleared for the next one
        assertTrue(collected.getText().toString(), collected.getText().toString().startsWith("1 example drawn"));
        try (ExampleStore store = Fedge.examples(activity, MainActivity.STORE)) {
            Examples stored = store.examples();
            assertEquals(1, stored.y.length);
            assertEquals(7, stored.y[0]);
            assertEquals(0.5f, stored.x[0][3], 1e-6f); // the vertical line down the middle
            assertEquals(0f, stored.x[0][0], 0f);
        }
    }

    @Test
    public void theBundledDemoSeedFillsTheStoreSoAPhoneCanJoinAtOnce() {
        MainActivity activity = Robolectric.buildActivity(MainActivity.class).setup().get();
        try (ExampleStore store = Fedge.examples(activity, MainActivity.STORE)) {
            store.clear();
        }
        ((Button) activity.findViewById(R.id.seed_demo)).performClick();
        try (ExampleStore store = Fedge.examples(activity, MainActivity.STORE)) {
            Examples seeded = store.examples();
            assertEquals(300, seeded.y.length);
            assertEquals(64, seeded.x[0].length);
        }
        String shown = ((TextView) activity.findViewById(R.id.collected)).getText().toString();
        assertTrue(shown, shown.startsWith("300 examples"));
    }
}
