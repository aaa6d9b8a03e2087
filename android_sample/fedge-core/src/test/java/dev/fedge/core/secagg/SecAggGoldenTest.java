package dev.fedge.core.secagg;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.fail;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.fedge.core.Golden;
import dev.fedge.core.ProtocolException;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SortedSet;
import java.util.TreeMap;
import org.junit.Test;

/** The Java SecAgg pieces against protocol/golden/secagg.json, written by the Python protocol. */
public class SecAggGoldenTest {
    private static JsonObject golden(String part) throws Exception {
        return Golden.load("secagg.json").getAsJsonObject().get(part).getAsJsonObject();
    }

    private static byte[] hex(JsonObject o, String name) {
        return Golden.bytes(o.get(name).getAsString());
    }

    private static void assertCode(String code, Runnable action) {
        try {
            action.run();
            fail("expected " + code);
        } catch (ProtocolException e) {
            assertEquals(e.getMessage(), code, e.code());
        }
    }

    @Test
    public void keyAgreementAndDerivationMatchPython() throws Exception {
        JsonObject g = golden("agreement");
        byte[] context = hex(g, "context");
        assertArrayEquals(hex(g, "a_public"), SecAggCrypto.publicOf(hex(g, "a_private")));
        assertArrayEquals(hex(g, "b_public"), SecAggCrypto.publicOf(hex(g, "b_private")));
        assertArrayEquals(hex(g, "shares_key"),
                SecAggCrypto.agree(hex(g, "a_private"), hex(g, "b_public"), context, SecAggCrypto.PURPOSE_SHARES));
        assertArrayEquals(hex(g, "shares_key"),
                SecAggCrypto.agree(hex(g, "b_private"), hex(g, "a_public"), context, SecAggCrypto.PURPOSE_SHARES));
        assertArrayEquals(hex(g, "mask_key"),
                SecAggCrypto.agree(hex(g, "a_private"), hex(g, "b_public"), context, SecAggCrypto.PURPOSE_MASK));
        // another round's context gives another key
        byte[] other = SecAggCrypto.agree(hex(g, "a_private"), hex(g, "b_public"), SecAggMessages.roundContext("digits", 4),
                SecAggCrypto.PURPOSE_MASK);
        assertEquals(false, Arrays.equals(other, hex(g, "mask_key")));
        assertCode("bad_key", () -> SecAggCrypto.agree(hex(g, "a_private"), new byte[32], context, "mask"));
        assertCode("bad_key", () -> SecAggCrypto.agree(hex(g, "a_private"), new byte[31], context, "mask"));
    }

    @Test
    public void opensPythonSealedShareAndRefusesTampering() throws Exception {
        JsonObject g = golden("sealed");
        byte[] key = hex(g, "key");
        byte[] aad = hex(g, "aad");
        byte[] sealed = hex(g, "sealed");
        assertArrayEquals(hex(g, "plaintext"), SecAggCrypto.open(key, sealed, aad));
        byte[] flipped = sealed.clone();
        flipped[20] ^= 1;
        assertCode("bad_ciphertext", () -> SecAggCrypto.open(key, flipped, aad));
        byte[] otherAad = aad.clone();
        otherAad[otherAad.length - 1] ^= 1; // addressed to another receiver
        assertCode("bad_ciphertext", () -> SecAggCrypto.open(key, sealed, otherAad));
        assertCode("bad_ciphertext", () -> SecAggCrypto.open(key, Arrays.copyOf(sealed, 20), aad));
        byte[] mine = SecAggCrypto.seal(key, hex(g, "plaintext"), aad, new SecureRandom());
        assertEquals(sealed.length, mine.length);
        assertArrayEquals(hex(g, "plaintext"), SecAggCrypto.open(key, mine, aad));
    }

    @Test
    public void shamirSharesMatchPythonAndRebuildTheSecret() throws Exception {
        JsonObject g = golden("shamir");
        List<BigInteger> coefficients = new ArrayList<>();
        coefficients.add(new BigInteger(1, hex(g, "secret")));
        for (JsonElement c : g.getAsJsonArray("coefficients")) {
            coefficients.add(new BigInteger(c.getAsString().substring(2), 16));
        }
        Map<Integer, BigInteger> expected = new TreeMap<>();
        for (Map.Entry<String, JsonElement> e : g.getAsJsonObject("shares").entrySet()) {
            expected.put(Integer.parseInt(e.getKey()), Shamir.fromBytes(Golden.bytes(e.getValue().getAsString())));
        }
        Map<Integer, BigInteger> shares = Shamir.evaluate(coefficients.toArray(new BigInteger[0]), expected.keySet());
        assertEquals(expected, new TreeMap<>(shares));
        for (Map.Entry<Integer, BigInteger> e : shares.entrySet()) {
            assertEquals(Golden.hex(Shamir.toBytes(e.getValue())),
                    g.getAsJsonObject("shares").get(String.valueOf(e.getKey())).getAsString());
        }
        int threshold = g.get("threshold").getAsInt();
        Map<Integer, BigInteger> three = new HashMap<>();
        for (int x : new int[] {8, 2, 5}) {
            three.put(x, shares.get(x));
        }
        assertArrayEquals(hex(g, "secret"), Shamir.reconstruct(three, threshold));
        three.remove(5);
        assertCode("below_threshold", () -> Shamir.reconstruct(three, threshold));
        assertCode("bad_share", () -> Shamir.fromBytes(Shamir.PRIME.toByteArray()));
        // a fresh random split rebuilds from any threshold-sized subset
        byte[] secret = new byte[32];
        new SecureRandom().nextBytes(secret);
        Map<Integer, BigInteger> fresh = Shamir.split(secret, Arrays.asList(1, 2, 3, 4, 5), 3, new SecureRandom());
        Map<Integer, BigInteger> subset = new HashMap<>();
        for (int x : new int[] {5, 1, 4}) {
            subset.put(x, fresh.get(x));
        }
        assertArrayEquals(secret, Shamir.reconstruct(subset, 3));
    }

    @Test
    public void neighbourGraphsMatchPython() throws Exception {
        for (JsonElement e : Golden.load("secagg.json").getAsJsonObject().getAsJsonArray("graphs")) {
            JsonObject g = e.getAsJsonObject();
            Map<Integer, SortedSet<Integer>> graph = SecAggGraph.neighbours(g.get("n").getAsInt(),
                    g.get("degree").getAsInt(), hex(g, "graph_seed"));
            for (Map.Entry<String, JsonElement> u : g.getAsJsonObject("neighbours").entrySet()) {
                List<Integer> expected = new ArrayList<>();
                for (JsonElement v : u.getValue().getAsJsonArray()) {
                    expected.add(v.getAsInt());
                }
                assertEquals("n=" + g.get("n") + " node " + u.getKey(), expected,
                        new ArrayList<>(graph.get(Integer.parseInt(u.getKey()))));
            }
            assertEquals(g.get("n").getAsInt(), graph.size());
        }
    }

    @Test
    public void gridQuantizationAndPackingMatchPython() throws Exception {
        for (JsonElement e : Golden.load("secagg.json").getAsJsonObject().getAsJsonArray("grids")) {
            JsonObject g = e.getAsJsonObject();
            ByteBuffer draws = ByteBuffer.wrap(hex(g, "uniforms")).order(ByteOrder.LITTLE_ENDIAN);
            long[] codes = Ring.quantize(Golden.floats(g.get("values").getAsString()), g.get("quant_bits").getAsInt(),
                    g.get("value_range").getAsDouble(), Long.parseUnsignedLong(g.get("rotation_seed").getAsString()),
                    draws::getDouble);
            assertEquals(0, draws.remaining());
            long[] expected = new long[codes.length];
            int i = 0;
            for (JsonElement c : g.getAsJsonArray("codes")) {
                expected[i++] = c.getAsLong();
            }
            assertEquals(expected.length, i);
            assertArrayEquals(expected, codes);
            assertEquals(g.get("packed").getAsString(), Golden.hex(Ring.pack(codes, g.get("modulus_bits").getAsInt())));
        }
        assertCode("bad_input", () -> Ring.pack(new long[] {1 << 12}, 12));
    }

    @Test
    public void distributedClipBitsCarryTheirOwnNoise() throws Exception {
        JsonObject all = Golden.load("secagg.json").getAsJsonObject().getAsJsonObject("distributed_clip_bits");
        JsonObject raw = all.getAsJsonObject("params");
        SecAggMessages.Params p = SecAggMessages.Params.fromJson(raw);
        assertEquals(1, p.extra);
        assertEquals(3.0, p.dpCountVariance, 0); // ceil(3^2 / 4 survivors)
        int cases = 0;
        for (JsonElement e : all.getAsJsonArray("cases")) {
            JsonObject c = e.getAsJsonObject();
            assertEquals(c.toString(), c.get("code").getAsLong(), DistributedDp.encodeBit(c.get("bit").getAsInt() == 1,
                    p.modulusBits, c.get("noise").getAsLong()));
            cases++;
        }
        assertEquals(6, cases);
        // A clip bit without its noise under distributed DP, or noise without the slot: refused.
        JsonObject noiseless = raw.deepCopy();
        noiseless.remove("dp_count_variance");
        assertCode("bad_params", () -> SecAggMessages.Params.fromJson(noiseless));
        JsonObject noSlot = raw.deepCopy();
        noSlot.addProperty("extra", 0);
        assertCode("bad_params", () -> SecAggMessages.Params.fromJson(noSlot));
    }

    @Test
    public void distributedDpCodesMatchPython() throws Exception {
        JsonElement all = Golden.load("secagg.json").getAsJsonObject().get("distributed");
        int redrawn = 0;
        for (JsonElement e : all.getAsJsonArray()) {
            JsonObject g = e.getAsJsonObject();
            float[] values = Golden.floats(g.get("values").getAsString());
            JsonObject raw = new JsonObject();
            raw.addProperty("n", 5);
            raw.addProperty("degree", 4);
            raw.addProperty("threshold", 3);
            raw.addProperty("quant_bits", g.get("quant_bits").getAsInt());
            raw.addProperty("modulus_bits", g.get("modulus_bits").getAsInt());
            raw.addProperty("value_range", g.get("value_range").getAsDouble());
            raw.addProperty("num_values", values.length);
            raw.addProperty("length", Ring.paddedLength(values.length));
            raw.add("rotation_seed", new com.google.gson.JsonPrimitive(new BigInteger(g.get("rotation_seed").getAsString())));
            raw.addProperty("graph_seed", java.util.Base64.getEncoder().encodeToString(new byte[32]));
            raw.addProperty("dp_variance", g.get("dp_variance").getAsDouble());
            raw.addProperty("dp_bound", g.get("dp_bound").getAsDouble());
            SecAggMessages.Params p = SecAggMessages.Params.fromJson(raw);
            double z = g.get("total_noise_multiplier_of_5").getAsDouble();
            assertEquals(z, DistributedDp.totalNoiseMultiplier(p, 5), 1e-12);
            assertEquals(z * Math.sqrt(4.0 / 5.0), DistributedDp.totalNoiseMultiplier(p, 4), 1e-12); // 4 keys seen
            DistributedDp.checkNoiseFloor(p, 5, 0.99 * z);
            assertCode("dp_floor", () -> DistributedDp.checkNoiseFloor(p, 5, 1.01 * z));
            ByteBuffer draws = ByteBuffer.wrap(hex(g, "uniforms")).order(ByteOrder.LITTLE_ENDIAN);
            java.util.Iterator<JsonElement> noise = g.getAsJsonArray("noise").iterator();
            long[] codes = DistributedDp.encode(values, p, draws::getDouble, () -> noise.next().getAsLong());
            assertEquals("every recorded rounding attempt is replayed", 0, draws.remaining());
            assertEquals(false, noise.hasNext());
            long[] expected = new long[codes.length];
            int i = 0;
            for (JsonElement c : g.getAsJsonArray("codes")) {
                expected[i++] = c.getAsLong();
            }
            assertArrayEquals(expected, codes);
            redrawn += g.get("attempts").getAsInt() > 1 ? 1 : 0;
        }
        assertEquals("one case exercises a refused rounding", 1, redrawn);
    }

    @Test
    public void distributedDpParamsAreChecked() {
        JsonObject raw = JsonParser.parseString("{\"n\": 5, \"degree\": 4, \"threshold\": 3, \"quant_bits\": 8, "
                + "\"modulus_bits\": 16, \"value_range\": 0.1, \"num_values\": 5, \"length\": 8, "
                + "\"rotation_seed\": 3, \"graph_seed\": \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\", "
                + "\"dp_variance\": 0.5, \"dp_bound\": 10.0}").getAsJsonObject();
        assertCode("bad_params", () -> SecAggMessages.Params.fromJson(raw)); // sigma^2 < 1
        raw.addProperty("dp_variance", 4.0);
        assertEquals(true, SecAggMessages.Params.fromJson(raw).distributedDp());
        raw.addProperty("extra", 1); // no clip bit with distributed DP
        assertCode("bad_params", () -> SecAggMessages.Params.fromJson(raw));
    }

    @Test
    public void maskedInputMatchesPython() throws Exception {
        JsonObject g = golden("masked_input");
        int me = g.get("my_index").getAsInt();
        List<Integer> sharers = new ArrayList<>();
        for (JsonElement s : g.getAsJsonArray("sharers")) {
            sharers.add(s.getAsInt());
        }
        Map<Integer, byte[]> peers = new TreeMap<>();
        for (JsonElement v : g.getAsJsonArray("neighbours")) {
            if (sharers.contains(v.getAsInt())) {
                peers.put(v.getAsInt(), SecAggMessages.PublicKeys.fromJson(
                        g.getAsJsonObject("keys").get(v.getAsString())).sPublic);
            }
        }
        SecAggMessages.Params params = SecAggMessages.Params.fromJson(g.getAsJsonObject("params"));
        SortedSet<Integer> graphPeers = new java.util.TreeSet<>(SecAggGraph.neighbours(params.n, params.degree,
                params.graphSeed).get(me));
        graphPeers.retainAll(sharers);
        assertEquals(graphPeers, peers.keySet()); // the Java graph gives the same neighbours
        long[] codes = g.getAsJsonArray("codes").asList().stream().mapToLong(JsonElement::getAsLong).toArray();
        long[] masked = SecAggClient.maskVector(codes, hex(g, "self_mask_seed"), hex(g, "s_private"), me, peers,
                hex(g, "context"), params.modulusBits);
        long[] expected = g.getAsJsonArray("masked").asList().stream().mapToLong(JsonElement::getAsLong).toArray();
        assertArrayEquals(expected, masked);
    }

    @Test
    public void viewParsesStrictly() throws Exception {
        JsonObject raw = golden("view");
        SecAggMessages.View view = SecAggMessages.View.fromJson(raw);
        assertEquals("unmasking", view.state);
        assertEquals(2, view.myIndex);
        assertEquals(3, view.params.n);
        assertEquals((1L << 62) + 1, view.params.rotationSeed);
        assertEquals(1025, view.params.vectorLength());
        assertEquals(3, view.keys.size());
        assertEquals(Arrays.asList(1, 2, 3), new ArrayList<>(view.sharers));
        assertEquals(2, view.inbox.size());
        assertEquals(3, view.inbox.get(1).sender);
        assertEquals(Arrays.asList(1, 2), new ArrayList<>(view.unmask.survivors));
        assertEquals(Arrays.asList(3), new ArrayList<>(view.unmask.dropped));

        JsonObject waiting = JsonParser.parseString("{\"state\": \"advertising\", \"my_index\": 0, \"reason\": \"\"}")
                .getAsJsonObject();
        assertNull(SecAggMessages.View.fromJson(waiting).params);

        JsonObject badThreshold = raw.deepCopy();
        badThreshold.getAsJsonObject("params").addProperty("threshold", 4);
        assertCode("bad_params", () -> SecAggMessages.View.fromJson(badThreshold));
        JsonObject duplicateSharers = raw.deepCopy();
        duplicateSharers.getAsJsonArray("sharers").add(2);
        assertCode("bad_response", () -> SecAggMessages.View.fromJson(duplicateSharers));
        JsonObject fractionalSharer = raw.deepCopy();
        fractionalSharer.getAsJsonArray("sharers").set(0, new com.google.gson.JsonPrimitive(1.5));
        assertCode("bad_response", () -> SecAggMessages.View.fromJson(fractionalSharer));
        JsonObject zeroSharer = raw.deepCopy();
        zeroSharer.getAsJsonArray("sharers").set(0, new com.google.gson.JsonPrimitive(0));
        assertCode("bad_response", () -> SecAggMessages.View.fromJson(zeroSharer));
        JsonObject shortKey = raw.deepCopy();
        shortKey.getAsJsonObject("keys").getAsJsonObject("1").addProperty("c_public", "AAAA");
        assertCode("bad_response", () -> SecAggMessages.View.fromJson(shortKey));
    }
}
