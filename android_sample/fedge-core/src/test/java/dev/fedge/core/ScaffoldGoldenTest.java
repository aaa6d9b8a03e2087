package dev.fedge.core;

import static org.junit.Assert.assertEquals;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import org.junit.Test;

/** SCAFFOLD's option II bit for bit as protocol/scaffold.py computes it (protocol/golden/scaffold.json). */
public class ScaffoldGoldenTest {
    @Test
    public void nextControlAndUpdateMatchPython() throws Exception {
        int cases = 0;
        for (JsonElement e : Golden.load("scaffold.json").getAsJsonArray()) {
            JsonObject v = e.getAsJsonObject();
            float[] c = Golden.floats(v.get("c").getAsString());
            float[] ci = Golden.floats(v.get("c_i").getAsString());
            float[] delta = Golden.floats(v.get("delta").getAsString());
            double momentum = v.get("momentum").getAsDouble();
            boolean nesterov = v.get("nesterov").getAsBoolean();
            assertEquals(v.get("effective_steps").getAsDouble(),
                    Scaffold.effectiveSteps(v.get("steps").getAsInt(), momentum, nesterov), 0.0);
            float[] next = Scaffold.nextControl(c, ci, delta, v.get("steps").getAsInt(),
                    v.get("learning_rate").getAsDouble(), momentum, nesterov);
            assertEquals(v.get("next_control").getAsString(), Golden.hex(next));
            assertEquals(v.get("update").getAsString(), Golden.hex(Scaffold.updateVector(delta, ci, next)));
            float[] sent = Golden.floats(v.get("sent").getAsString());
            assertEquals(v.get("after_sent").getAsString(), Golden.hex(Scaffold.afterSent(ci, sent)));
            cases++;
        }
        assertEquals(5, cases);
    }
}
