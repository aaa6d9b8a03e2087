package dev.fedge.core.secagg;

import dev.fedge.core.MaskExpansion;
import dev.fedge.core.ProtocolException;
import dev.fedge.core.secagg.SecAggMessages.EncryptedShare;
import dev.fedge.core.secagg.SecAggMessages.Params;
import dev.fedge.core.secagg.SecAggMessages.PublicKeys;
import dev.fedge.core.secagg.SecAggMessages.RevealedShare;
import dev.fedge.core.secagg.SecAggMessages.UnmaskRequest;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SortedSet;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * The device's side of SecAgg (Bonawitz et al. 2017; SecAgg+ graphs from Bell et al. 2020),
 * the same state machine and safety checks as protocol/secagg/client.py:
 *
 * <ol start="0">
 *   <li>AdvertiseKeys: two fresh X25519 public keys (c to seal shares, s to agree masks).</li>
 *   <li>ShareKeys: given the roster, draw the self-mask seed b; Shamir-share s_sk and b among
 *       my neighbours and me with threshold t; seal each neighbour's pair of shares.</li>
 *   <li>MaskedInput: given who shared (U2) and my inbox, keep the shares and send
 *       y = x + PRG(b) + sum over neighbours v in U2 of +-PRG(KA(s_sk, s_pk_v)) mod 2^k.</li>
 *   <li>Unmasking: reveal b-shares of survivors and s_sk-shares of dropped devices, never
 *       both for one device, and answer one request only.</li>
 * </ol>
 */
public final class SecAggClient {
    /** The coordinator asked for something that would expose an individual update. */
    public static final class UnsafeRequest extends ProtocolException {
        private static final long serialVersionUID = 1L;

        UnsafeRequest(String message) {
            super(message, "unsafe_request");
        }
    }

    private static final int PAIR_BYTES = 8;

    private final byte[] context;
    private final SecureRandom random;
    private final SecAggCrypto.KeyPair c;
    private final SecAggCrypto.KeyPair s;
    private int index;
    private Params params;
    private Map<Integer, PublicKeys> keys;
    private SortedSet<Integer> neighbours = new TreeSet<>();
    private SortedSet<Integer> sharers = new TreeSet<>();
    private byte[] selfMaskSeed;
    private final Map<Integer, BigInteger[]> held = new TreeMap<>(); // owner -> {share of s_sk, share of b}
    private BigInteger[] own;
    private UnmaskRequest answered;

    public SecAggClient(byte[] context, SecureRandom random) {
        this.context = context.clone();
        this.random = random;
        this.c = SecAggCrypto.generate(random);
        this.s = SecAggCrypto.generate(random);
    }

    public PublicKeys publicKeys() {
        return new PublicKeys(c.publicKey, s.publicKey);
    }

    // -- phase 1 ---------------------------------------------------------------------
    public List<EncryptedShare> shareKeys(int myIndex, Params p, Map<Integer, PublicKeys> roster) {
        Set<Integer> expected = new HashSet<>();
        for (int i = 1; i <= p.n; i++) {
            expected.add(i);
        }
        if (!roster.keySet().equals(expected) || !publicKeys().sameAs(roster.get(myIndex))) {
            throw new UnsafeRequest("the roster does not list my keys under my index, or is not indices 1..n");
        }
        Set<String> publics = new HashSet<>();
        for (PublicKeys k : roster.values()) {
            publics.add(SecAggMessages.b64(k.cPublic));
            publics.add(SecAggMessages.b64(k.sPublic));
        }
        if (publics.size() != 2 * roster.size()) {
            throw new UnsafeRequest("the roster repeats a public key");
        }
        index = myIndex;
        params = p;
        keys = roster;
        neighbours = SecAggGraph.neighbours(p.n, p.degree, p.graphSeed).get(myIndex);
        if (neighbours.size() + 1 < p.threshold) {
            throw new UnsafeRequest("threshold " + p.threshold + " is above my " + neighbours.size()
                    + " neighbours and me");
        }
        selfMaskSeed = new byte[Shamir.SECRET_BYTES];
        random.nextBytes(selfMaskSeed);
        SortedSet<Integer> xs = new TreeSet<>(neighbours);
        xs.add(myIndex);
        Map<Integer, BigInteger> sShares = Shamir.split(s.privateKey, xs, p.threshold, random);
        Map<Integer, BigInteger> bShares = Shamir.split(selfMaskSeed, xs, p.threshold, random);
        own = new BigInteger[] {sShares.get(myIndex), bShares.get(myIndex)};
        List<EncryptedShare> out = new ArrayList<>();
        for (int v : neighbours) {
            byte[] key = SecAggCrypto.agree(c.privateKey, roster.get(v).cPublic, context, SecAggCrypto.PURPOSE_SHARES);
            ByteBuffer plain = ByteBuffer.allocate(PAIR_BYTES + 2 * Shamir.SHARE_BYTES);
            plain.putInt(myIndex).putInt(v).put(Shamir.toBytes(sShares.get(v))).put(Shamir.toBytes(bShares.get(v)));
            out.add(new EncryptedShare(myIndex, v,
                    SecAggCrypto.seal(key, plain.array(), shareAad(context, myIndex, v), random)));
        }
        return out;
    }

    // -- phase 2 ---------------------------------------------------------------------
    /** Opens and keeps the shares sent to me by the neighbours that shared keys (U2). */
    public void receiveShares(Collection<Integer> u2, List<EncryptedShare> inbox) {
        Params p = requireParams();
        if (!u2.contains(index) || !keys.keySet().containsAll(u2)) {
            throw new UnsafeRequest("the list of devices that shared keys must include me and only roster members");
        }
        SortedSet<Integer> peers = new TreeSet<>(neighbours);
        peers.retainAll(u2);
        if (peers.size() + 1 < p.threshold) {
            throw new UnsafeRequest("only " + peers.size() + " of my neighbours shared keys; threshold is "
                    + p.threshold);
        }
        List<Integer> senders = new ArrayList<>();
        for (EncryptedShare item : inbox) {
            senders.add(item.sender);
            if (item.receiver != index) {
                throw new ProtocolException("the inbox holds a share addressed to " + item.receiver, "bad_inbox");
            }
        }
        senders.sort(null);
        if (!senders.equals(new ArrayList<>(peers))) {
            throw new ProtocolException("the inbox must hold exactly one share from each neighbour that shared keys",
                    "bad_inbox");
        }
        Map<Integer, BigInteger[]> opened = new TreeMap<>();
        opened.put(index, own);
        for (EncryptedShare item : inbox) {
            byte[] key = SecAggCrypto.agree(c.privateKey, keys.get(item.sender).cPublic, context,
                    SecAggCrypto.PURPOSE_SHARES);
            byte[] plain = SecAggCrypto.open(key, item.ciphertext, shareAad(context, item.sender, index));
            ByteBuffer body = ByteBuffer.wrap(plain);
            if (plain.length != PAIR_BYTES + 2 * Shamir.SHARE_BYTES || body.getInt() != item.sender
                    || body.getInt() != index) {
                throw new ProtocolException("share from " + item.sender + " is malformed", "bad_share");
            }
            opened.put(item.sender, new BigInteger[] {
                Shamir.fromBytes(Arrays.copyOfRange(plain, PAIR_BYTES, PAIR_BYTES + Shamir.SHARE_BYTES)),
                Shamir.fromBytes(Arrays.copyOfRange(plain, PAIR_BYTES + Shamir.SHARE_BYTES, plain.length))});
        }
        held.clear();
        held.putAll(opened);
        sharers = new TreeSet<>(u2);
    }

    /** y for my codes (each below 2^quant_bits, length L + extra), mod 2^modulus_bits. */
    public long[] mask(long[] codes) {
        Params p = requireParams();
        if (sharers.isEmpty()) {
            throw new ProtocolException("SecAgg phases out of order: no shares received yet", "out_of_order");
        }
        if (codes.length != p.vectorLength()) {
            throw new ProtocolException("masked input needs " + p.vectorLength() + " codes", "bad_input");
        }
        int bits = p.distributedDp() ? p.modulusBits : p.quantBits; // noised codes use the whole ring
        for (long code : codes) {
            if (code < 0 || code >> bits != 0) {
                throw new ProtocolException("masked input needs codes below 2^" + bits, "bad_input");
            }
        }
        Map<Integer, byte[]> peerKeys = new TreeMap<>();
        for (int v : neighbours) {
            if (sharers.contains(v)) {
                peerKeys.put(v, keys.get(v).sPublic);
            }
        }
        return maskVector(codes, selfMaskSeed, s.privateKey, index, peerKeys, context, p.modulusBits);
    }

    /**
     * The masking arithmetic on its own: codes + PRG(b) + sum over peers v of sign(me, v)
     * PRG(KA(s_sk, s_pk_v)) mod 2^bits, sign + when me < v.
     */
    public static long[] maskVector(long[] codes, byte[] selfMaskSeed, byte[] sPrivate, int me,
                                    Map<Integer, byte[]> peerSPublics, byte[] context, int bits) {
        long modulus = 1L << bits;
        long[] total = MaskExpansion.expand(selfMaskSeed, codes.length, bits);
        for (int i = 0; i < codes.length; i++) {
            total[i] = (total[i] + codes[i]) & (modulus - 1);
        }
        for (Map.Entry<Integer, byte[]> peer : new TreeMap<>(peerSPublics).entrySet()) {
            byte[] seed = SecAggCrypto.agree(sPrivate, peer.getValue(), context, SecAggCrypto.PURPOSE_MASK);
            long[] mask = MaskExpansion.expand(seed, codes.length, bits);
            boolean add = me < peer.getKey();
            for (int i = 0; i < codes.length; i++) {
                total[i] = (add ? total[i] + mask[i] : total[i] - mask[i]) & (modulus - 1);
            }
        }
        return total;
    }

    public long[] maskedInput(long[] codes, Collection<Integer> u2, List<EncryptedShare> inbox) {
        receiveShares(u2, inbox);
        return mask(codes);
    }

    // -- phase 3 ---------------------------------------------------------------------
    public List<RevealedShare> unmask(UnmaskRequest request) {
        Params p = requireParams();
        if (answered != null && !answered.equals(request)) {
            throw new UnsafeRequest("already answered a different unmasking request this round");
        }
        SortedSet<Integer> both = new TreeSet<>(request.survivors);
        both.retainAll(request.dropped);
        if (!both.isEmpty()) {
            throw new UnsafeRequest("asked for both the self-mask and the mask-key shares of " + both
                    + "; revealing both would expose their update");
        }
        Set<Integer> asked = new HashSet<>(request.survivors);
        asked.addAll(request.dropped);
        if (sharers.isEmpty() || !sharers.containsAll(asked) || !request.survivors.contains(index)) {
            throw new UnsafeRequest("survivors and dropped must be devices that shared keys, with me a survivor");
        }
        SortedSet<Integer> around = new TreeSet<>(request.survivors);
        around.remove(index);
        around.retainAll(neighbours);
        if (around.size() + 1 < p.threshold) {
            throw new UnsafeRequest("fewer than " + p.threshold + " survivors around me; the sum would cover too few "
                    + "inputs");
        }
        List<RevealedShare> out = new ArrayList<>();
        for (Map.Entry<Integer, BigInteger[]> e : held.entrySet()) {
            int owner = e.getKey();
            if (request.survivors.contains(owner)) {
                out.add(new RevealedShare(owner, SecAggMessages.SELF_MASK, Shamir.toBytes(e.getValue()[1])));
            } else if (request.dropped.contains(owner)) {
                out.add(new RevealedShare(owner, SecAggMessages.MASK_KEY, Shamir.toBytes(e.getValue()[0])));
            }
        }
        answered = request;
        return out;
    }

    public static byte[] shareAad(byte[] context, int sender, int receiver) {
        return ByteBuffer.allocate(context.length + PAIR_BYTES).put(context).putInt(sender).putInt(receiver).array();
    }

    private Params requireParams() {
        if (params == null) {
            throw new ProtocolException("SecAgg phases out of order: no roster yet", "out_of_order");
        }
        return params;
    }
}
