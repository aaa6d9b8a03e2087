package dev.fedge.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import java.util.Arrays;
import java.util.Random;
import org.junit.Test;

public class UpdateCodecTest {
    private static int[] counts(JsonObject c) {
        return c.getAsJsonArray("counts").asList().stream().mapToInt(JsonElement::getAsInt).toArray();
    }

    @Test
    public void encodesEveryGoldenCaseBitForBit() throws Exception {
        int checked = 0;
        for (JsonElement e : Golden.load("codec.json").getAsJsonArray()) {
            JsonObject c = e.getAsJsonObject();
            CodecSpec spec = CodecSpec.parse(c.get("codec").getAsString(), c.get("chunk_size").getAsInt());
            byte[] payload = UpdateCodec.encode(Golden.floats(c.get("values").getAsString()), counts(c), spec,
                    Uniforms.replay(Golden.floats(c.get("uniforms").getAsString())),
                    Long.parseUnsignedLong(c.get("rotation_seed").getAsString()),
                    Long.parseUnsignedLong(c.get("sparse_seed").getAsString()));
            assertEquals(c.get("name").getAsString(), c.get("payload").getAsString(), Golden.hex(payload));
            checked++;
        }
        assertEquals(12, checked);
    }

    @Test
    public void decodesEveryGoldenCaseBitForBit() throws Exception {
        for (JsonElement e : Golden.load("codec.json").getAsJsonArray()) {
            JsonObject c = e.getAsJsonObject();
            UpdateCodec.Decoded d = UpdateCodec.decode(Golden.bytes(c.get("payload").getAsString()), counts(c));
            assertEquals(c.get("name").getAsString(), c.get("decoded").getAsString(), Golden.hex(d.values));
            assertEquals(c.get("wire_codec").getAsString(), d.codec);
            assertEquals(c.get("kept").getAsInt(), d.kept);
            assertEquals(c.get("sparse_seed").getAsString(), Long.toUnsignedString(d.sparseSeed));
        }
    }

    @Test
    public void stochasticRoundingIsUnbiased() {
        float[] values = new float[256];
        Random random = new Random(7);
        for (int i = 0; i < values.length; i++) {
            values[i] = (float) random.nextGaussian();
        }
        CodecSpec spec = CodecSpec.parse("q4", 256);
        double[] mean = new double[values.length];
        int draws = 2000;
        for (int d = 0; d < draws; d++) {
            float[] back = UpdateCodec.decode(UpdateCodec.encode(values, new int[] {256}, spec, Uniforms.of(random), 0),
                    null).values;
            for (int i = 0; i < values.length; i++) {
                mean[i] += back[i] / draws;
            }
        }
        float step = 0;
        float lo = Float.MAX_VALUE;
        float hi = -Float.MAX_VALUE;
        for (float v : values) {
            lo = Math.min(lo, v);
            hi = Math.max(hi, v);
        }
        step = (hi - lo) / 15f;
        double worst = 0;
        for (int i = 0; i < values.length; i++) {
            worst = Math.max(worst, Math.abs(mean[i] - values[i]));
        }
        // One draw's error is at most one step; the mean of 2000 is within a few step/sqrt(2000).
        assertTrue("mean error " + worst + " vs step " + step, worst < 4 * step / Math.sqrt(draws));
    }

    @Test
    public void rejectsMalformedPayloads() throws Exception {
        JsonObject c = Golden.load("codec.json").getAsJsonArray().get(1).getAsJsonObject();
        byte[] good = Golden.bytes(c.get("payload").getAsString());
        byte[][] bad = {
            Arrays.copyOf(good, good.length - 1),
            Arrays.copyOf(good, 10),
            withByte(good, 0, 'X'),
            withByte(good, 4, 2),
            withByte(good, 5, 9),
            withByte(good, 6, 4),
            Arrays.copyOf(good, good.length + 1),
        };
        for (byte[] payload : bad) {
            try {
                UpdateCodec.decode(payload, null);
                fail("accepted a malformed payload of " + payload.length + " bytes");
            } catch (ProtocolException expected) {
                assertEquals("bad_payload", expected.code());
            }
        }
        try {
            UpdateCodec.decode(good, new int[] {4, 4});
            fail("accepted wrong tensor sizes");
        } catch (ProtocolException expected) {
            assertEquals("shape_mismatch", expected.code());
        }
    }

    @Test
    public void refusesNonFiniteValuesAndBadCodecs() {
        try {
            UpdateCodec.encode(new float[] {1f, Float.NaN}, new int[] {2}, CodecSpec.parse("q8", 4), Uniforms.of(new Random()), 0);
            fail("encoded NaN");
        } catch (ProtocolException expected) {
            assertEquals("non_finite", expected.code());
        }
        for (String[] bad : new String[][] {{"q16", "256"}, {"f32+rot", "256"}, {"q8+rot", "100"}, {"q8", "0"},
                {"q8+sparse:0", "256"}, {"q8+sparse:1", "256"}, {"q8+sparse:x", "256"}, {"q8+sparse:0.1+rot", "256"},
                {"q8+rot+rot", "256"}}) {
            try {
                CodecSpec.parse(bad[0], Integer.parseInt(bad[1]));
                fail("accepted codec " + bad[0] + "/" + bad[1]);
            } catch (ProtocolException expected) {
                assertEquals("bad_codec", expected.code());
            }
        }
    }

    @Test
    public void eightBitIsAboutAQuarterOfFloat32() {
        float[] values = new float[6570];
        int[] counts = {4096, 64, 2240, 170};
        byte[] q8 = UpdateCodec.encode(values, counts, CodecSpec.parse("q8", 256), Uniforms.of(new Random(1)), 0);
        byte[] f32 = UpdateCodec.encode(values, counts, CodecSpec.parse("f32", 256), Uniforms.of(new Random(1)), 0);
        assertEquals(CodecSpec.parse("q8", 256).payloadBytes(4, 6570), q8.length);
        double ratio = (double) q8.length / f32.length;
        assertTrue("ratio " + ratio, ratio > 0.25 && ratio < 0.27);
        assertNotEquals(q8.length, f32.length);
        assertArrayEquals(new float[6570], UpdateCodec.decode(q8, counts).values, 0f);
    }

    private static byte[] withByte(byte[] data, int index, int value) {
        byte[] out = data.clone();
        out[index] = (byte) value;
        return out;
    }

    @Test
    public void aSparsePayloadWithoutItsSeedOrWithAnotherKeptCountIsRefused() throws Exception {
        JsonObject c = null;
        for (JsonElement e : Golden.load("codec.json").getAsJsonArray()) {
            if (e.getAsJsonObject().get("name").getAsString().equals("q8_sparse_edge_padded")) {
                c = e.getAsJsonObject();
            }
        }
        byte[] good = Golden.bytes(c.get("payload").getAsString());
        int table = CodecSpec.HEADER_BYTES + 4 * counts(c).length;
        byte[] zeroSeed = good.clone();
        java.nio.ByteBuffer.wrap(zeroSeed).order(java.nio.ByteOrder.LITTLE_ENDIAN).putLong(table, 0L);
        byte[] moreKept = good.clone();
        java.nio.ByteBuffer.wrap(moreKept).order(java.nio.ByteOrder.LITTLE_ENDIAN).putInt(table + 8, 1000);
        byte[] oneMoreKept = good.clone();
        java.nio.ByteBuffer.wrap(oneMoreKept).order(java.nio.ByteOrder.LITTLE_ENDIAN).putInt(table + 8,
                c.get("kept").getAsInt() + 1);
        for (byte[] bad : new byte[][] {zeroSeed, moreKept, oneMoreKept}) {
            try {
                UpdateCodec.decode(bad, counts(c));
                fail("accepted a malformed sparse payload");
            } catch (ProtocolException expected) {
                assertEquals("bad_payload", expected.code());
            }
        }
    }
}
