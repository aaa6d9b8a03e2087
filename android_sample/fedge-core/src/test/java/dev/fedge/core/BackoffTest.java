package dev.fedge.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.util.Random;
import org.junit.Test;

public class BackoffTest {
    @Test
    public void growsExponentiallyWithBoundedJitterUpToTheCap() {
        Backoff backoff = new Backoff(0.2, 10.0, 1.0, new Random(3));
        for (int attempt = 0; attempt < 12; attempt++) {
            double base = 0.2 * Math.pow(2, attempt);
            double d = backoff.delaySeconds(attempt);
            assertTrue(attempt + ": " + d, d >= Math.min(base, 10.0) && d <= Math.min(base + 1.0, 10.0));
        }
        assertEquals(10.0, backoff.delaySeconds(100), 0);
    }

    @Test
    public void jitterSpreadsDevicesApart() {
        double a = new Backoff(0.2, 10.0, 1.0, new Random(1)).delaySeconds(2);
        double b = new Backoff(0.2, 10.0, 1.0, new Random(2)).delaySeconds(2);
        assertTrue(Math.abs(a - b) > 1e-6);
        assertEquals(a, new Backoff(0.2, 10.0, 1.0, new Random(1)).delaySeconds(2), 0);
    }

    @Test
    public void obeysComeBackAtT() {
        assertEquals(30.0, Backoff.untilRetryAt(1030.0, 1000.0, 60.0), 1e-9);
        assertEquals(0.0, Backoff.untilRetryAt(990.0, 1000.0, 60.0), 0);
        assertEquals(60.0, Backoff.untilRetryAt(5000.0, 1000.0, 60.0), 0);
    }

    @Test(expected = IllegalArgumentException.class)
    public void refusesACapBelowTheStart() {
        new Backoff(5.0, 1.0, 0.0, new Random());
    }
}
