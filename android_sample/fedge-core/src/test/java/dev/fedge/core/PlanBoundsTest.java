package dev.fedge.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import java.util.Map;
import org.junit.Test;

/** The plan's bounds the core reads (its packaged plan_bounds.json) are the golden file's, and
 *  each one is enforced: a plan at a bound parses, a plan just past it is refused by name. */
public class PlanBoundsTest {
    private static JsonObject plan() throws Exception {
        return Golden.load("messages.json").getAsJsonObject().getAsJsonObject("checkin_assigned")
                .getAsJsonObject("assignment").getAsJsonObject("plan").deepCopy();
    }

    private static JsonObject with(String name, double value) throws Exception {
        JsonObject p = plan();
        p.remove("dp_sgd_noise_multiplier");  // so that a clip of 0 stays a valid plan
        if (value == Math.rint(value) && Math.abs(value) < 9.1e15) {
            p.addProperty(name, (long) value);
        } else {
            p.addProperty(name, value);
        }
        return p;
    }

    @Test
    public void theBoundsReadAreTheGoldenOnes() throws Exception {
        JsonObject golden = Golden.load("plan_bounds.json").getAsJsonObject();
        Map<String, double[]> read = PlanBounds.all();
        assertEquals(golden.keySet(), read.keySet());
        for (Map.Entry<String, JsonElement> e : golden.entrySet()) {
            JsonArray pair = e.getValue().getAsJsonArray();
            assertEquals(e.getKey(), pair.get(0).getAsDouble(), read.get(e.getKey())[0], 0);
            assertEquals(e.getKey(), pair.get(1).getAsDouble(), read.get(e.getKey())[1], 0);
        }
    }

    @Test
    public void everyBoundIsEnforced() throws Exception {
        for (Map.Entry<String, double[]> e : PlanBounds.all().entrySet()) {
            String name = e.getKey();
            double lo = e.getValue()[0];
            double hi = e.getValue()[1];
            Plan.fromJson(with(name, lo));
            Plan.fromJson(with(name, hi));
            double below = lo == 0 ? -1e-9 : (lo >= 1 ? lo - 1 : lo / 2);
            double above = hi >= 1e15 ? hi + 2 : (hi == Math.rint(hi) ? hi + 1 : hi * 1.001);
            for (double bad : new double[] {below, above}) {
                try {
                    Plan.fromJson(with(name, bad));
                    fail(name + " = " + bad + " accepted");
                } catch (ProtocolException expected) {
                    assertTrue(expected.getMessage(), expected.getMessage().contains(name));
                }
            }
        }
    }
}
