package dev.fedge.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.fail;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import org.junit.Test;

public class RotationAndMaskTest {
    @Test
    public void rotationSignsAndHadamardMatchPython() throws Exception {
        for (JsonElement e : Golden.load("rotation.json").getAsJsonArray()) {
            JsonObject c = e.getAsJsonObject();
            long seed = Long.parseUnsignedLong(c.get("seed").getAsString());
            float[] signs = Rotation.signs(seed, c.get("length").getAsInt());
            StringBuilder text = new StringBuilder();
            for (float s : signs) {
                text.append(s < 0 ? '-' : '+');
            }
            assertEquals(c.get("signs").getAsString(), text.toString());
            float[] out = Rotation.hadamardChunks(Golden.floats(c.get("hadamard_in").getAsString()),
                    c.get("hadamard_chunk").getAsInt());
            assertEquals(c.get("hadamard_out").getAsString(), Golden.hex(out));
        }
    }

    @Test
    public void maskExpansionMatchesPython() throws Exception {
        for (JsonElement e : Golden.load("prg.json").getAsJsonArray()) {
            JsonObject c = e.getAsJsonObject();
            long[] words = MaskExpansion.expand(Golden.bytes(c.get("seed").getAsString()), c.get("length").getAsInt(),
                    c.get("bits").getAsInt());
            int i = 0;
            for (JsonElement w : c.getAsJsonArray("words")) {
                assertEquals("word " + i, w.getAsLong(), words[i++]);
            }
            assertEquals(c.get("length").getAsInt(), i);
        }
    }

    @Test
    public void maskExpansionRefusesBadSeeds() {
        try {
            MaskExpansion.expand(new byte[16], 4, 32);
            fail("accepted a 16-byte seed");
        } catch (ProtocolException expected) {
            assertEquals("bad_key", expected.code());
        }
    }
}
