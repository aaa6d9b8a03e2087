package dev.fedge.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import org.junit.Test;

/** The same rules as tests/device_runtime/test_training.py, for the Java trainers. */
public class LocalWorkTest {
    private static Plan plan(double mu, double budget, boolean partial) {
        JsonObject raw = new JsonObject();
        raw.addProperty("epochs", 4);
        raw.addProperty("batch_size", 32);
        raw.addProperty("learning_rate", 0.05);
        raw.addProperty("codec", "q8");
        raw.addProperty("chunk_size", 256);
        raw.addProperty("proximal_mu", mu);
        raw.addProperty("max_local_seconds", budget);
        raw.addProperty("partial_work", partial);
        return Plan.fromJson(raw);
    }

    @Test
    public void fullWorkReportsTheLocalDatasetSize() throws Exception {
        LocalWork work = new LocalWork(plan(0, 0, false), 0);
        work.processed(80);
        assertEquals(20, work.exampleCount(20, 4));
    }

    @Test
    public void partialWorkCountsOnlyWhenTheTaskTakesIt() throws Exception {
        LocalWork taken = new LocalWork(plan(0, 0, true), 0);
        taken.processed(20);
        assertEquals(5, taken.exampleCount(20, 1)); // 20 processed / 4 planned epochs
        LocalWork refused = new LocalWork(plan(0, 0, false), 0);
        refused.processed(20);
        try {
            refused.exampleCount(20, 1);
            fail("partial work uploaded in a task that does not take it");
        } catch (LocalWork.Unfinished expected) {
            assertTrue(expected.getMessage().contains("1 of 4 epochs"));
        }
    }

    @Test
    public void theBudgetStopsAtABatchBoundary() throws Exception {
        LocalWork work = new LocalWork(plan(0, 3.5, true), 0);
        assertEquals(false, work.budgetSpent(3_000_000_000L));
        work.processed(60);
        assertTrue(work.budgetSpent(4_000_000_000L));
        assertEquals(15, work.exampleCount(20, 3)); // stopped: partial even after 3 whole epochs
    }

    @Test
    public void fedProxNeedsAFileWhoseTrainStepTakesMu() {
        LocalWork.checkPlan(plan(0, 0, false), false, "old");
        LocalWork.checkPlan(plan(0.5, 0, false), true, "new");
        try {
            LocalWork.checkPlan(plan(0.5, 0, false), false, "old");
            fail("FedProx accepted on a file without proximal_mu");
        } catch (ProtocolException expected) {
            assertEquals("unsupported_plan", expected.code());
            assertTrue(expected.getMessage().contains("exported before FedProx"));
        }
    }

    @Test
    public void theTrainSignatureMatchesPython() throws Exception {
        int cases = 0;
        for (JsonElement e : Golden.load("train_signature.json").getAsJsonArray()) {
            JsonObject v = e.getAsJsonObject();
            JsonArray raw = v.getAsJsonArray("signatures");
            String[] keys = new String[raw.size()];
            for (int i = 0; i < keys.length; i++) {
                keys[i] = raw.get(i).getAsString();
            }
            assertEquals(v.toString(), v.get("signature").getAsString(), LocalWork.trainSignature(keys,
                    v.get("proximal_mu").getAsDouble(), v.get("corrected").getAsBoolean(),
                    v.get("dp_sgd").getAsBoolean()));
            cases++;
        }
        assertEquals(20, cases);
    }
}
