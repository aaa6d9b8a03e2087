package dev.fedge.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.After;
import org.junit.Before;
import org.junit.Test;

/** The round runner's refusals against a JDK HttpServer playing a misbehaving coordinator. */
public class FedgeDeviceTest {
    private static final double NOW = 1_800_000_000.0;
    private final double[] clock = {NOW}; // advanced only by the sleeper below
    private FakeCoordinator server;
    private final AtomicInteger checkins = new AtomicInteger();
    private final List<Long> sleeps = Collections.synchronizedList(new ArrayList<>());

    @Before
    public void start() throws IOException {
        server = new FakeCoordinator();
    }

    @After
    public void stop() {
        server.close();
    }

    private FedgeDevice device() throws IOException {
        FedgeClient client = new FedgeClient(server.url(),
                Backoff.defaults(new Random(0)), ms -> { }, 2);
        LocalTrainer never = new LocalTrainer() {
            @Override
            public Result train(TrainJob job) {
                throw new AssertionError("no round should reach training");
            }

            @Override
            public Evaluation evaluate(byte[] model, String sha, float[] weights, int[] counts, Plan plan) {
                throw new AssertionError("no round should reach evaluation");
            }

            @Override
            public double estimateSeconds(Plan plan) {
                return 0;
            }
        };
        DeviceState state = new DeviceState(true, true, true, 1.0, 1024, "jvm", "test");
        return new FedgeDevice(client, never, new BlobCache.Directory(Files.createTempDirectory("fedge-test").toFile()),
                () -> state, () -> clock[0], new Random(0));
    }

    @Test
    public void refusedCheckinWaitsBeforeTheNextOne() throws Exception {
        server.on("/v1/checkin", ex -> {
            checkins.incrementAndGet();
            FakeCoordinator.reply(ex, 401, "{\"error\": {\"code\": \"unauthorized\", \"message\": \"invalid device token\"}}");
        });
        FedgeDevice device = device();
        FedgeDevice.RoundOutcome outcome = device.runOnce(0);
        assertEquals("rejected", outcome.outcome);
        assertEquals(NOW + FedgeDevice.REFUSED_WAIT_S, outcome.retryAt, 1e-9);
        assertTrue(outcome.detail, outcome.detail.contains("invalid device token"));
        assertEquals(1, checkins.get()); // a 4xx is not retried by the client either
        // runUntil sleeps until that time instead of checking in again at once
        device.runUntil(1, NOW + 1, 0, ms -> {
            sleeps.add(ms);
            clock[0] += ms / 1000.0;
        }, o -> { });
        assertEquals(Collections.singletonList((long) (FedgeDevice.REFUSED_WAIT_S * 1000)), sleeps);
        assertEquals(2, checkins.get());
    }

    @Test
    public void malformedAssignmentIsRefusedAndTheDeviceGoesOn() throws Exception {
        server.on("/v1/checkin", ex -> {
            checkins.incrementAndGet();
            // "assigned" without a plan: nothing this device can act on
            FakeCoordinator.reply(ex, 200, "{\"outcome\": \"assigned\", \"assignment\": {\"task_id\": \"t\", \"round\": 1}}");
        });
        FedgeDevice device = device();
        FedgeDevice.RoundOutcome outcome = device.runOnce(0);
        assertEquals("refused", outcome.outcome);
        assertEquals(1, device.stats.refused);
        assertEquals("refused", device.stats.lastOutcome);
        assertEquals(NOW + FedgeDevice.REFUSED_WAIT_S, outcome.retryAt, 1e-9);
        assertEquals("refused", device.runOnce(0).outcome); // still alive: it checks in again
        assertEquals(2, checkins.get());
    }
}
