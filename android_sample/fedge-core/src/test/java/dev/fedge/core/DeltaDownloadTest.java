package dev.fedge.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.fail;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import org.junit.Test;

public class DeltaDownloadTest {
    @Test
    public void baseplusDeltaMatchesPythonBitForBit() throws Exception {
        int cases = 0;
        for (JsonElement e : Golden.load("delta_download.json").getAsJsonArray()) {
            JsonObject g = e.getAsJsonObject();
            UpdateCodec.Decoded got = DeltaDownload.apply(Golden.bytes(g.get("base").getAsString()),
                    Golden.bytes(g.get("delta").getAsString()));
            // Bit for bit: the float32 values' little-endian bytes, as Python's tobytes() wrote them.
            assertEquals(g.get("codec").getAsString(), g.get("values").getAsString(), Golden.hex(got.values));
            assertArrayEquals(new int[] {40, 7, 33}, got.counts);
            cases++;
        }
        assertEquals(2, cases);
    }

    @Test
    public void aDeltaOfOtherSizesIsRefused() throws Exception {
        JsonObject g = Golden.load("delta_download.json").getAsJsonArray().get(0).getAsJsonObject();
        byte[] base = Golden.bytes(g.get("base").getAsString());
        byte[] other = UpdateCodec.encode(new float[5], new int[] {5}, CodecSpec.parse("q8", 16), Uniforms.of(new java.util.Random(0)), 1L);
        try {
            DeltaDownload.apply(base, other);
            fail("a delta for other tensor sizes was applied");
        } catch (ProtocolException expected) {
            assertEquals("shape_mismatch", expected.code());
        }
    }
}
