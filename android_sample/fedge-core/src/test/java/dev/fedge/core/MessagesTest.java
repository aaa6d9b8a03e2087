package dev.fedge.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import com.google.gson.JsonObject;
import org.junit.Test;

public class MessagesTest {
    private static JsonObject example(String name) throws Exception {
        return Golden.load("messages.json").getAsJsonObject().getAsJsonObject(name);
    }

    @Test
    public void parsesAnAssignment() throws Exception {
        CheckinResponse r = CheckinResponse.fromJson(example("checkin_assigned"));
        assertTrue(r.assigned());
        Assignment a = r.assignment;
        assertEquals("digits", a.taskId);
        assertEquals(7, a.round);
        assertEquals("u-123", a.uploadToken);
        assertEquals("/v1/tasks/digits/rounds/7/update", a.uploadUrl);
        assertEquals(1795000000.5, a.reportDeadline, 0);
        assertEquals(2, a.plan.epochs);
        assertEquals(32, a.plan.batchSize);
        assertEquals(0.05, a.plan.learningRate, 0);
        assertEquals("q8", a.plan.codecSpec().kind);
        assertEquals(0.1, a.plan.codecSpec().sparse, 0);
        assertEquals(9007199254740991L, a.plan.sparseSeed);
        assertEquals(1.1, a.plan.dpSgdNoiseMultiplier, 0);
        assertEquals(0.5, a.plan.dpSgdClip, 0);
        assertEquals(1e-6, a.plan.dpSgdDelta, 0);
        assertTrue(a.plan.dpSgd());
        assertEquals(256, a.plan.chunkSize);
        assertEquals(3.0, a.plan.clipNorm, 0);
        assertEquals("", a.plan.secagg);
        assertFalse(a.plan.reportClipBit);
        assertEquals(0.25, a.plan.proximalMu, 0);
        assertEquals(30.5, a.plan.maxLocalSeconds, 0);
        assertTrue(a.plan.partialWork);
    }

    @Test
    public void refusesAnOutOfRangeProximalMu() throws Exception {
        JsonObject bad = example("checkin_assigned").deepCopy();
        bad.getAsJsonObject("assignment").getAsJsonObject("plan").addProperty("proximal_mu", -1.0);
        try {
            CheckinResponse.fromJson(bad);
            fail("accepted a negative proximal_mu");
        } catch (ProtocolException expected) {
            assertTrue(expected.getMessage().contains("proximal_mu"));
        }
    }

    @Test
    public void parsesARetry() throws Exception {
        CheckinResponse r = CheckinResponse.fromJson(example("checkin_retry"));
        assertFalse(r.assigned());
        assertNull(r.assignment);
        assertEquals(1795000030.25, r.retryAt, 0);
        assertEquals("not eligible: charging", r.reason);
    }

    @Test
    public void writesTheCheckinStateAndUploadMetaAsPythonDoes() throws Exception {
        DeviceState state = new DeviceState(true, true, false, 0.8, 2048.0, "litert", "2.3.0");
        assertEquals(example("checkin_request").getAsJsonObject("state"), state.toJson());
        UploadMeta meta = new UploadMeta(80, 0.5, 0.75, 0.875, 20, null);
        assertEquals(example("upload_meta"), meta.toJson());
        assertTrue(new UploadMeta(80, 0.5, 0.75, 0.875, 20, true).toJson().get("below_clip").getAsBoolean());
        assertEquals(example("upload_meta_dp_sgd"), new UploadMeta(80, 0.5, 0.75, 0.875, 20, null,
                new dev.fedge.core.dp.DpSgdEvent(1.1, 0.4, 6)).toJson());
    }

    @Test
    public void strictParsingRefusesMissingAndMistypedFields() throws Exception {
        JsonObject noPlan = example("checkin_assigned").deepCopy();
        noPlan.getAsJsonObject("assignment").remove("plan");
        JsonObject roundAsText = example("checkin_assigned").deepCopy();
        roundAsText.getAsJsonObject("assignment").addProperty("round", "7");
        JsonObject fractionalEpochs = example("checkin_assigned").deepCopy();
        fractionalEpochs.getAsJsonObject("assignment").getAsJsonObject("plan").addProperty("epochs", 1.5);
        JsonObject unknown = example("checkin_retry").deepCopy();
        unknown.addProperty("outcome", "maybe");
        for (JsonObject bad : new JsonObject[] {noPlan, roundAsText, fractionalEpochs, unknown}) {
            try {
                CheckinResponse.fromJson(bad);
                fail("accepted " + bad);
            } catch (ProtocolException expected) {
                assertTrue(expected.getMessage(), expected.getMessage().length() > 5);
            }
        }
    }
}
