package dev.fedge.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.After;
import org.junit.Before;
import org.junit.Test;

/** The HTTP client against a local JDK HttpServer playing the coordinator. */
public class FedgeClientTest {
    private FakeCoordinator server;
    private final List<Long> sleeps = Collections.synchronizedList(new ArrayList<>());
    private final List<String> uploadHeaders = Collections.synchronizedList(new ArrayList<>());

    @Before
    public void start() throws IOException {
        server = new FakeCoordinator();
    }

    @After
    public void stop() {
        server.close();
    }

    private FedgeClient client() {
        return new FedgeClient(server.url() + "/", Backoff.defaults(new Random(0)),
                sleeps::add, 4);
    }

    @Test
    public void retriesServerErrorsWithBackoffThenSucceeds() throws Exception {
        AtomicInteger calls = new AtomicInteger();
        server.on("/v1/devices/register", ex -> {
            if (calls.incrementAndGet() < 3) {
                FakeCoordinator.reply(ex, 503, "{\"error\": {\"code\": \"busy\", \"message\": \"try later\"}}");
            } else {
                FakeCoordinator.reply(ex, 200, "{\"device_id\": \"d-1\", \"token\": \"d-1.secret\"}");
            }
        });
        FedgeClient client = client();
        assertEquals("d-1.secret", client.register("phones", "test"));
        assertEquals(3, calls.get());
        assertEquals(2, sleeps.size());
        assertTrue(sleeps.get(0) >= 200 && sleeps.get(1) >= 400);
    }

    @Test
    public void a4xxIsNotRetriedAndCarriesTheCoordinatorsErrorCode() throws Exception {
        AtomicInteger calls = new AtomicInteger();
        server.on("/v1/checkin", ex -> {
            calls.incrementAndGet();
            FakeCoordinator.reply(ex, 401, "{\"error\": {\"code\": \"unauthorized\", \"message\": \"unknown device token\"}}");
        });
        FedgeClient client = client();
        client.setToken("nope");
        try {
            client.checkin(new DeviceState(true, true, true, 1.0, 100, "litert", "x"), new ArrayList<>(), 0);
            fail("a 401 must raise");
        } catch (FedgeClient.ApiException e) {
            assertEquals(401, e.status);
            assertEquals("unauthorized", e.code);
        }
        assertEquals(1, calls.get());
        assertTrue(sleeps.isEmpty());
    }

    @Test
    public void uploadSendsTokenMetaAndTheSameBytesOnRetry() throws Exception {
        List<byte[]> bodies = Collections.synchronizedList(new ArrayList<>());
        server.on("/v1/tasks/t/rounds/1/update", ex -> {
            bodies.add(ex.getRequestBody().readAllBytes());
            uploadHeaders.add(ex.getRequestHeaders().getFirst("Fedge-Upload-Token") + " "
                    + ex.getRequestHeaders().getFirst("Fedge-Upload") + " "
                    + ex.getRequestHeaders().getFirst("Authorization"));
            if (bodies.size() == 1) {
                FakeCoordinator.reply(ex, 500, "oops");
            } else {
                FakeCoordinator.reply(ex, 200, "{\"accepted\": true}");
            }
        });
        JsonAssignment assigned = new JsonAssignment();
        FedgeClient client = client();
        client.setToken("d-1.secret");
        byte[] payload = {1, 2, 3, 4, 5};
        client.upload(assigned.assignment, payload, new UploadMeta(12, 0.5, 0.6, 0.7, 3, null));
        assertEquals(2, bodies.size());
        assertTrue(java.util.Arrays.equals(bodies.get(0), bodies.get(1)));
        assertTrue(uploadHeaders.get(1), uploadHeaders.get(1).startsWith("u-1 {\"example_count\":12,"));
        assertTrue(uploadHeaders.get(1).endsWith("Bearer d-1.secret"));
        assertEquals(5, client.bytesUp());
    }

    @Test
    public void aBlobThatDoesNotMatchItsHashIsRefused() throws Exception {
        server.on("/v1/blobs/", ex -> FakeCoordinator.reply(ex, 200, "not the model"));
        BlobCache cache = new BlobCache.Directory(java.nio.file.Files.createTempDirectory("fedge-cache").toFile());
        String sha = "ab".repeat(32);
        try {
            client().fetchBlob("/v1/blobs/" + sha, sha, cache);
            fail("accepted a blob with the wrong hash");
        } catch (ProtocolException e) {
            assertEquals("bad_blob", e.code());
        }
        assertTrue(cache.keys().isEmpty());
    }

    @Test
    public void aPresignedUrlIsFetchedFromItsOwnHostWithoutTheDevicesToken() throws Exception {
        byte[] blob = "model bytes from the object store".getBytes(java.nio.charset.StandardCharsets.UTF_8);
        String sha = FedgeClient.sha256Hex(blob);
        List<String> seen = Collections.synchronizedList(new ArrayList<>());
        try (FakeCoordinator store = new FakeCoordinator()) {
            store.on("/bucket/", ex -> {
                seen.add(ex.getRequestURI().toString() + " auth=" + ex.getRequestHeaders().getFirst("Authorization"));
                ex.sendResponseHeaders(200, blob.length);
                ex.getResponseBody().write(blob);
                ex.close();
            });
            AtomicInteger coordinatorAsked = new AtomicInteger();
            server.on("/v1/blobs/", ex -> {
                coordinatorAsked.incrementAndGet();
                FakeCoordinator.reply(ex, 404, "{}");
            });
            FedgeClient client = client();
            client.setToken("d-1.secret");
            String url = store.url() + "/bucket/blobs/" + sha + "?X-Amz-Signature=abc";
            BlobCache cache = new BlobCache.Directory(java.nio.file.Files.createTempDirectory("fedge-cache").toFile());
            assertTrue(java.util.Arrays.equals(blob, client.fetchBlob(url, sha, cache)));
            assertEquals(Collections.singletonList("/bucket/blobs/" + sha + "?X-Amz-Signature=abc auth=null"), seen);
            assertEquals(0, coordinatorAsked.get());
        }
    }

    @Test
    public void aTamperedObjectFromTheStoreIsRefusedAndNotCached() throws Exception {
        try (FakeCoordinator store = new FakeCoordinator()) {
            store.on("/bucket/", ex -> FakeCoordinator.reply(ex, 200, "tampered weights"));
            String sha = "cd".repeat(32);
            BlobCache cache = new BlobCache.Directory(java.nio.file.Files.createTempDirectory("fedge-cache").toFile());
            try {
                client().fetchBlob(store.url() + "/bucket/blobs/" + sha + "?X-Amz-Signature=abc", sha, cache);
                fail("accepted a tampered object");
            } catch (ProtocolException e) {
                assertEquals("bad_blob", e.code());
            }
            assertTrue(cache.keys().isEmpty());
        }
    }

    /** A minimal assignment pointing at this server's upload path. */
    private static final class JsonAssignment {
        final Assignment assignment;

        JsonAssignment() {
            com.google.gson.JsonObject plan = new com.google.gson.JsonObject();
            plan.addProperty("epochs", 1);
            plan.addProperty("batch_size", 32);
            plan.addProperty("learning_rate", 0.1);
            plan.addProperty("codec", "q8");
            plan.addProperty("chunk_size", 256);
            com.google.gson.JsonObject a = new com.google.gson.JsonObject();
            a.addProperty("task_id", "t");
            a.addProperty("round", 1);
            a.addProperty("upload_token", "u-1");
            a.add("plan", plan);
            for (String f : new String[] {"model_sha256", "model_url", "checkpoint_sha256", "checkpoint_url"}) {
                a.addProperty(f, "x");
            }
            a.addProperty("upload_url", "/v1/tasks/t/rounds/1/update");
            a.addProperty("report_deadline", 1e12);
            assignment = Assignment.fromJson(a);
        }
    }
}
