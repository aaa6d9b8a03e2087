package dev.fedge.core.dp;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.fedge.core.Golden;
import dev.fedge.core.LocalWork;
import dev.fedge.core.Plan;
import dev.fedge.core.ProtocolException;
import java.util.Random;
import org.junit.Test;

public class DpSgdEventTest {
    @Test
    public void theReportedEventMatchesPython() throws Exception {
        int cases = 0;
        for (JsonElement e : Golden.load("dp_sgd.json").getAsJsonArray()) {
            JsonObject v = e.getAsJsonObject();
            DpSgdEvent event = DpSgdEvent.ofRound(v.get("noise_multiplier").getAsDouble(),
                    v.get("batch_size").getAsInt(), v.get("examples").getAsInt(), v.get("steps").getAsInt());
            assertEquals(v.toString(), v.getAsJsonObject("event"), event.toJson());
            cases++;
        }
        assertEquals(4, cases);
    }

    @Test
    public void standardNormalNoiseHasUnitVariance() {
        float[] noise = new float[200_000];
        DpSgdEvent.standardNormal(noise, new Random(5));
        double sum = 0;
        double squares = 0;
        for (float x : noise) {
            sum += x;
            squares += x * x;
        }
        double mean = sum / noise.length;
        assertEquals(0.0, mean, 0.01);
        assertEquals(1.0, squares / noise.length - mean * mean, 0.01);
    }

    @Test
    public void aPlanWithDpSgdNeedsTrainDp() {
        JsonObject raw = new JsonObject();
        raw.addProperty("epochs", 1);
        raw.addProperty("batch_size", 8);
        raw.addProperty("learning_rate", 0.1);
        raw.addProperty("codec", "q8");
        raw.addProperty("chunk_size", 256);
        raw.addProperty("dp_sgd_noise_multiplier", 1.0);
        raw.addProperty("dp_sgd_clip", 0.5);
        Plan plan = Plan.fromJson(raw);
        assertTrue(plan.dpSgd());
        LocalWork.checkDpSgd(plan, new String[] {"train", "train_dp"}, "m");
        try {
            LocalWork.checkDpSgd(plan, new String[] {"train", "train_plain"}, "m");
            fail("a file without train_dp accepted a DP-SGD plan");
        } catch (ProtocolException expected) {
            assertEquals("unsupported_plan", expected.code());
        }
        raw.addProperty("dp_sgd_clip", 0.0);
        try {
            Plan.fromJson(raw);
            fail("noise without a clip accepted");
        } catch (ProtocolException expected) {
            assertEquals("bad_request", expected.code());
        }
    }
}
