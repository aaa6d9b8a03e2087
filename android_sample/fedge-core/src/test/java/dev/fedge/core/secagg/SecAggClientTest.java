package dev.fedge.core.secagg;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.fail;

import com.google.gson.JsonObject;
import dev.fedge.core.MaskExpansion;
import dev.fedge.core.ProtocolException;
import dev.fedge.core.secagg.SecAggMessages.EncryptedShare;
import dev.fedge.core.secagg.SecAggMessages.Params;
import dev.fedge.core.secagg.SecAggMessages.PublicKeys;
import dev.fedge.core.secagg.SecAggMessages.RevealedShare;
import dev.fedge.core.secagg.SecAggMessages.UnmaskRequest;
import java.math.BigInteger;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.SortedSet;
import java.util.TreeMap;
import java.util.TreeSet;
import org.junit.Test;

/**
 * Six Java clients run a whole SecAgg+ round among themselves, one dropping after it shared
 * its keys; playing the server, the test unmasks the sum from the revealed shares alone
 * and gets exactly the sum of the survivors' codes. Plus the client's refusals.
 */
public class SecAggClientTest {
    private static final int N = 6;
    private static final byte[] CONTEXT = SecAggMessages.roundContext("t", 1);

    private static Params params(int n, int degree, int threshold, int length) {
        JsonObject raw = new JsonObject();
        raw.addProperty("n", n);
        raw.addProperty("degree", degree);
        raw.addProperty("threshold", threshold);
        raw.addProperty("quant_bits", 8);
        raw.addProperty("modulus_bits", 11);
        raw.addProperty("value_range", 0.5);
        raw.addProperty("num_values", length);
        raw.addProperty("length", length);
        raw.addProperty("rotation_seed", 7);
        raw.addProperty("graph_seed", SecAggMessages.b64(new byte[32]));
        raw.addProperty("extra", 0);
        return Params.fromJson(raw);
    }

    private static final class Round {
        final Params p = params(N, 4, 3, 16);
        final Map<Integer, SecAggClient> clients = new TreeMap<>();
        final Map<Integer, PublicKeys> roster = new TreeMap<>();
        final Map<Integer, List<EncryptedShare>> inbox = new HashMap<>();

        Round() {
            SecureRandom random = new SecureRandom();
            for (int i = 1; i <= N; i++) {
                clients.put(i, new SecAggClient(CONTEXT, random));
                roster.put(i, clients.get(i).publicKeys());
                inbox.put(i, new ArrayList<>());
            }
            for (int i = 1; i <= N; i++) {
                for (EncryptedShare share : clients.get(i).shareKeys(i, p, roster)) {
                    inbox.get(share.receiver).add(share);
                }
            }
        }
    }

    @Test
    public void survivorsSumUnmasksExactlyDespiteADropout() {
        Round r = new Round();
        List<Integer> sharers = Arrays.asList(1, 2, 3, 4, 5, 6);
        int dropped = 6; // shared its keys, then vanished before its masked input
        Random random = new Random(1);
        long modulus = 1L << r.p.modulusBits;
        long[] sumOfCodes = new long[r.p.vectorLength()];
        long[] sumOfMasked = new long[r.p.vectorLength()];
        for (int i = 1; i < dropped; i++) {
            long[] codes = new long[r.p.vectorLength()];
            for (int j = 0; j < codes.length; j++) {
                codes[j] = random.nextInt(256);
                sumOfCodes[j] = (sumOfCodes[j] + codes[j]) % modulus;
            }
            long[] masked = r.clients.get(i).maskedInput(codes, sharers, r.inbox.get(i));
            assertEquals(false, Arrays.equals(codes, masked));
            for (int j = 0; j < codes.length; j++) {
                sumOfMasked[j] = (sumOfMasked[j] + masked[j]) % modulus;
            }
        }
        UnmaskRequest request = new UnmaskRequest(new TreeSet<>(Arrays.asList(1, 2, 3, 4, 5)),
                new TreeSet<>(Arrays.asList(dropped)));
        Map<Integer, Map<Integer, BigInteger>> selfMaskShares = new TreeMap<>();
        Map<Integer, BigInteger> droppedKeyShares = new TreeMap<>();
        for (int i = 1; i < dropped; i++) {
            for (RevealedShare share : r.clients.get(i).unmask(request)) {
                if (share.kind.equals(SecAggMessages.SELF_MASK)) {
                    selfMaskShares.computeIfAbsent(share.owner, k -> new TreeMap<>())
                            .put(i, Shamir.fromBytes(share.share));
                } else {
                    assertEquals(dropped, share.owner);
                    droppedKeyShares.put(i, Shamir.fromBytes(share.share));
                }
            }
        }
        // Server: remove each survivor's self mask, and the dropped device's pairwise masks.
        long[] total = sumOfMasked.clone();
        for (int u = 1; u < dropped; u++) {
            long[] b = MaskExpansion.expand(Shamir.reconstruct(selfMaskShares.get(u), r.p.threshold), total.length,
                    r.p.modulusBits);
            for (int j = 0; j < total.length; j++) {
                total[j] = Math.floorMod(total[j] - b[j], modulus);
            }
        }
        byte[] droppedKey = Shamir.reconstruct(droppedKeyShares, r.p.threshold);
        assertArrayEquals(r.roster.get(dropped).sPublic, SecAggCrypto.publicOf(droppedKey));
        SortedSet<Integer> around = SecAggGraph.neighbours(N, r.p.degree, r.p.graphSeed).get(dropped);
        for (int u : around) {
            byte[] seed = SecAggCrypto.agree(droppedKey, r.roster.get(u).sPublic, CONTEXT, SecAggCrypto.PURPOSE_MASK);
            long[] mask = MaskExpansion.expand(seed, total.length, r.p.modulusBits);
            for (int j = 0; j < total.length; j++) { // u added +mask when u < dropped
                total[j] = Math.floorMod(u < dropped ? total[j] - mask[j] : total[j] + mask[j], modulus);
            }
        }
        assertArrayEquals(sumOfCodes, total);
        // The same request again is answered again; a different one is refused.
        assertEquals(r.clients.get(1).unmask(request).size(), r.clients.get(1).unmask(request).size());
        UnmaskRequest other = new UnmaskRequest(new TreeSet<>(Arrays.asList(1, 2, 3, 4)),
                new TreeSet<>(Arrays.asList(5, 6)));
        expectUnsafe(() -> r.clients.get(1).unmask(other));
    }

    @Test
    public void refusesRequestsThatWouldExposeAnUpdate() {
        Round r = new Round();
        List<Integer> all = Arrays.asList(1, 2, 3, 4, 5, 6);
        SecAggClient c = r.clients.get(2);
        c.maskedInput(new long[r.p.vectorLength()], all, r.inbox.get(2));
        // both shares of one device: its update would be unmasked alone
        expectUnsafe(() -> c.unmask(new UnmaskRequest(new TreeSet<>(Arrays.asList(1, 2, 3, 4, 5)),
                new TreeSet<>(Arrays.asList(3, 6)))));
        // too few survivors around me
        expectUnsafe(() -> c.unmask(new UnmaskRequest(new TreeSet<>(Arrays.asList(2)),
                new TreeSet<>(Arrays.asList(1, 3, 4, 5, 6)))));
        // a roster that does not list my keys under my index
        SecAggClient fresh = new SecAggClient(CONTEXT, new SecureRandom());
        expectUnsafe(() -> fresh.shareKeys(1, r.p, r.roster));
        // a roster with a repeated key
        Map<Integer, PublicKeys> repeated = new TreeMap<>(r.roster);
        repeated.put(3, r.roster.get(4));
        expectUnsafe(() -> new Round().clients.get(1).shareKeys(1, r.p, repeated));
    }

    @Test
    public void refusesAnInboxThatIsTamperedOrIncomplete() {
        Round r = new Round();
        List<Integer> all = Arrays.asList(1, 2, 3, 4, 5, 6);
        List<EncryptedShare> inbox = new ArrayList<>(r.inbox.get(1));
        EncryptedShare first = inbox.get(0);
        byte[] flipped = first.ciphertext.clone();
        flipped[flipped.length - 1] ^= 1;
        inbox.set(0, new EncryptedShare(first.sender, first.receiver, flipped));
        long[] zeros = new long[r.p.vectorLength()];
        try {
            r.clients.get(1).maskedInput(zeros, all, inbox);
            fail("a tampered share was accepted");
        } catch (ProtocolException e) {
            assertEquals("bad_ciphertext", e.code());
        }
        try {
            r.clients.get(1).maskedInput(zeros, all, r.inbox.get(1).subList(1, r.inbox.get(1).size()));
            fail("an incomplete inbox was accepted");
        } catch (ProtocolException e) {
            assertEquals("bad_inbox", e.code());
        }
        try {
            r.clients.get(1).mask(zeros);
            fail("masked before any shares were received");
        } catch (ProtocolException e) {
            assertEquals("out_of_order", e.code());
        }
    }

    private static void expectUnsafe(Runnable action) {
        try {
            action.run();
            fail("expected an unsafe_request refusal");
        } catch (SecAggClient.UnsafeRequest e) {
            assertEquals("unsafe_request", e.code());
        }
    }
}
