package dev.fedge.core;

import java.util.Random;

/**
 * Retry pacing: exponential backoff with jitter for failed requests (the same shape as the
 * Python runtime's tenacity wait_exponential_jitter), and "come back at T" for check-ins
 * the coordinator declined (pace steering: it spreads a population's check-ins over time,
 * so a device must not come back earlier than it was told).
 */
public final class Backoff {
    /** Sleeps; injectable so tests can run without waiting. */
    public interface Sleeper {
        void sleep(long millis) throws InterruptedException;
    }

    public static final Sleeper THREAD_SLEEP = Thread::sleep;

    private final double initialS;
    private final double maxS;
    private final double jitterS;
    private final Random random;

    public Backoff(double initialS, double maxS, double jitterS, Random random) {
        if (initialS < 0 || maxS < initialS || jitterS < 0) {
            throw new IllegalArgumentException("need 0 <= initial <= max and jitter >= 0");
        }
        this.initialS = initialS;
        this.maxS = maxS;
        this.jitterS = jitterS;
        this.random = random;
    }

    /** The defaults of the Python device runtime: 0.2 s doubling, up to 10 s, plus up to 1 s of jitter. */
    public static Backoff defaults(Random random) {
        return new Backoff(0.2, 10.0, 1.0, random);
    }

    /** Seconds to wait before retry number {@code attempt} (0 for the first retry). */
    public double delaySeconds(int attempt) {
        double exponential = initialS * Math.pow(2, Math.min(attempt, 30));
        return Math.min(maxS, exponential + random.nextDouble() * jitterS);
    }

    /** Seconds until the coordinator's retry time, never negative and at most {@code capS}. */
    public static double untilRetryAt(double retryAtUnixS, double nowUnixS, double capS) {
        return Math.max(0.0, Math.min(capS, retryAtUnixS - nowUnixS));
    }
}
