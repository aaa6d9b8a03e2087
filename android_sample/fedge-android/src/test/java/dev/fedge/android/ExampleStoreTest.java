package dev.fedge.android;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertThrows;

import android.app.Application;
import dev.fedge.core.Examples;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.robolectric.RobolectricTestRunner;
import org.robolectric.RuntimeEnvironment;
import org.robolectric.annotation.Config;

/** The on-device example store: persistence, the cap, the time to live, what training reads. */
@RunWith(RobolectricTestRunner.class)
@Config(sdk = 34)
public class ExampleStoreTest {
    private static final long DAY = 24L * 3600 * 1000;

    @Test
    public void examplesSurviveANewInstanceAndComeBackInOrder() {
        Application app = RuntimeEnvironment.getApplication();
        try (ExampleStore store = ExampleStore.open(app, "digits")) {
            store.clear();
            store.add(new float[] {0.5f, 0.25f}, 3);
            store.add(new float[] {1.0f, 0.0f}, 7);
        }
        try (ExampleStore again = ExampleStore.open(app, "digits")) { // as after process death
            assertEquals(2, again.count());
            Examples e = again.examples();
            assertArrayEquals(new float[] {0.5f, 0.25f}, e.x[0], 0f);
            assertArrayEquals(new float[] {1.0f, 0.0f}, e.x[1], 0f);
            assertArrayEquals(new int[] {3, 7}, e.y);
            again.clear();
            assertEquals(0, again.count());
            assertNull(again.examples());
        }
    }

    @Test
    public void theCapDropsTheOldest() {
        AtomicLong now = new AtomicLong(1_000_000);
        try (ExampleStore store = ExampleStore.open(RuntimeEnvironment.getApplication(), "capped", 3, 7 * DAY,
                now::get)) {
            store.clear();
            for (int i = 0; i < 5; i++) {
                store.add(new float[] {i}, i);
                now.addAndGet(1000);
            }
            assertEquals(3, store.count());
            assertArrayEquals(new int[] {2, 3, 4}, store.examples().y);
        }
    }

    @Test
    public void examplesExpireAfterTheirTimeToLive() {
        AtomicLong now = new AtomicLong(10 * DAY);
        try (ExampleStore store = ExampleStore.open(RuntimeEnvironment.getApplication(), "ttl", 100, 2 * DAY,
                now::get)) {
            store.clear();
            store.add(new float[] {1f}, 1);
            now.addAndGet(DAY);
            store.add(new float[] {2f}, 2);
            assertEquals(2, store.count());
            now.addAndGet(DAY + 1); // the first is now older than two days
            assertEquals(1, store.count());
            assertArrayEquals(new int[] {2}, store.examples().y);
            now.addAndGet(DAY);
            assertNull(store.examples());
        }
    }

    @Test
    public void theHoldoutSplitOfWhatTrainingReadsIsStable() {
        try (ExampleStore store = ExampleStore.open(RuntimeEnvironment.getApplication(), "split")) {
            store.clear();
            for (int i = 0; i < 50; i++) {
                store.add(new float[] {i, i * 0.5f}, i % 10);
            }
            int[][] first = store.examples().holdoutSplit(0.2, 7);
            int[][] second = store.examples().holdoutSplit(0.2, 7);
            assertArrayEquals(first[1], second[1]);
            assertEquals(10, first[1].length);
            assertEquals(40, first[0].length);
        }
    }

    @Test
    public void badExamplesAndNamesAreRefusedAndChangeNothing() {
        Application app = RuntimeEnvironment.getApplication();
        assertThrows(IllegalArgumentException.class, () -> ExampleStore.open(app, "../escape"));
        try (ExampleStore store = ExampleStore.open(app, "strict")) {
            store.clear();
            store.add(new float[] {1f, 2f}, 0);
            assertThrows(IllegalArgumentException.class, () -> store.add(new float[] {1f}, 0));
            assertThrows(IllegalArgumentException.class, () -> store.add(new float[] {Float.NaN, 0f}, 0));
            assertThrows(IllegalArgumentException.class, () -> store.add(new float[0], 0));
            assertEquals(1, store.count());
        }
    }
}
