package dev.fedge.core.secagg;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.fedge.core.Json;
import dev.fedge.core.ProtocolException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.SortedSet;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * The messages of the SecAgg phases (protocol/secagg/messages.py), strictly parsed: JSON
 * with binary fields in base64; devices know each other only by roster index 1..n.
 */
public final class SecAggMessages {
    public static final String SELF_MASK = "self_mask";
    public static final String MASK_KEY = "mask_key";
    public static final int MAX_INDEX = 1 << 20;
    private static final int MAX_CIPHERTEXT_BYTES = 1024;

    private SecAggMessages() {
    }

    /** Binds every derived key and sealed share to one round of one task: "task_id|round". */
    public static byte[] roundContext(String taskId, int round) {
        return (taskId + "|" + round).getBytes(StandardCharsets.UTF_8);
    }

    /** Fixed when the key advertisement closes; every participant derives the same graph and grid. */
    public static final class Params {
        public final int n;
        public final int degree;
        public final int threshold;
        public final int quantBits;
        public final int modulusBits;
        public final double valueRange;
        public final int numValues;
        public final int length;
        public final long rotationSeed;
        public final byte[] graphSeed;
        public final int extra;
        /** Distributed DP: each device's N_Z noise variance and rounding bound, in grid units; 0: none. */
        public final double dpVariance;
        public final double dpBound;
        /** Sparse (the codec's "+sparse:F"): the kept codes of the rotation seed's subset; 0: all length. */
        public final int kept;
        /** Distributed DP with adaptive clipping: each device's N_Z variance on its clip bit; 0: none. */
        public final double dpCountVariance;

        private Params(JsonObject raw) {
            n = Json.integer(raw, "n", null);
            degree = Json.integer(raw, "degree", null);
            threshold = Json.integer(raw, "threshold", null);
            quantBits = Json.integer(raw, "quant_bits", null);
            modulusBits = Json.integer(raw, "modulus_bits", null);
            valueRange = Json.number(raw, "value_range", null);
            numValues = Json.integer(raw, "num_values", null);
            length = Json.integer(raw, "length", null);
            rotationSeed = unsignedLong(raw, "rotation_seed");
            graphSeed = unb64(raw, "graph_seed", 32);
            extra = Json.integer(raw, "extra", 0);
            dpVariance = Json.number(raw, "dp_variance", 0.0);
            dpBound = Json.number(raw, "dp_bound", 0.0);
            kept = Json.integer(raw, "kept", 0);
            dpCountVariance = Json.number(raw, "dp_count_variance", 0.0);
            // Under distributed DP the clip bit travels only with its own noise, and that noise only then.
            boolean bitNoise = dpVariance > 0 && extra > 0;
            if ((dpCountVariance == 0) == bitNoise || dpCountVariance < 0 || dpCountVariance > 1e12
                    || dpCountVariance != Math.rint(dpCountVariance)) {
                throw new ProtocolException("inconsistent SecAgg parameters", "bad_params");
            }
            if (kept < 0 || kept > length || (kept > 0 && dpVariance > 0)) {
                throw new ProtocolException("inconsistent SecAgg parameters", "bad_params");
            }
            if (!(2 <= n && n <= MAX_INDEX && 1 <= degree && degree < n && 1 <= threshold && threshold <= degree + 1
                    && 1 <= quantBits && quantBits < modulusBits && modulusBits <= 32 && valueRange > 0
                    && 1 <= numValues && numValues <= length && (length & (length - 1)) == 0
                    && 0 <= extra && extra <= 16
                    && (dpVariance == 0 || (dpVariance >= 1 && dpVariance <= 1e12 && dpVariance == Math.rint(dpVariance)
                    && dpBound > 0 && dpBound <= 1e12
                    && extra <= 1)))) {
                throw new ProtocolException("inconsistent SecAgg parameters", "bad_params");
            }
        }

        public static Params fromJson(JsonObject raw) {
            return new Params(raw);
        }

        public boolean distributedDp() {
            return dpVariance > 0;
        }

        /** The update's codes that travel: the kept ones, or all length. */
        public int codedLength() {
            return kept > 0 ? kept : length;
        }

        public int vectorLength() {
            return codedLength() + extra;
        }
    }

    public static final class PublicKeys {
        public final byte[] cPublic; // X25519, to encrypt shares
        public final byte[] sPublic; // X25519, to agree mask seeds

        public PublicKeys(byte[] cPublic, byte[] sPublic) {
            this.cPublic = cPublic.clone();
            this.sPublic = sPublic.clone();
        }

        public static PublicKeys fromJson(JsonElement raw) {
            JsonObject o = object(raw, "public keys");
            return new PublicKeys(unb64(o, "c_public", 32), unb64(o, "s_public", 32));
        }

        public JsonObject toJson() {
            JsonObject out = new JsonObject();
            out.addProperty("c_public", b64(cPublic));
            out.addProperty("s_public", b64(sPublic));
            return out;
        }

        public boolean sameAs(PublicKeys other) {
            return other != null && java.util.Arrays.equals(cPublic, other.cPublic)
                    && java.util.Arrays.equals(sPublic, other.sPublic);
        }
    }

    public static final class EncryptedShare {
        public final int sender;
        public final int receiver;
        public final byte[] ciphertext;

        public EncryptedShare(int sender, int receiver, byte[] ciphertext) {
            this.sender = sender;
            this.receiver = receiver;
            this.ciphertext = ciphertext.clone();
        }

        public static EncryptedShare fromJson(JsonElement raw) {
            JsonObject o = object(raw, "an encrypted share");
            byte[] data = unb64(o, "ciphertext", -1);
            if (data.length > MAX_CIPHERTEXT_BYTES) {
                throw new ProtocolException("ciphertext is too long", "bad_response");
            }
            return new EncryptedShare(index(o, "sender"), index(o, "receiver"), data);
        }

        public JsonObject toJson() {
            JsonObject out = new JsonObject();
            out.addProperty("sender", sender);
            out.addProperty("receiver", receiver);
            out.addProperty("ciphertext", b64(ciphertext));
            return out;
        }
    }

    /** Survivors sent a masked input (reveal their self-mask shares); dropped ones did not (reveal mask keys). */
    public static final class UnmaskRequest {
        public final SortedSet<Integer> survivors;
        public final SortedSet<Integer> dropped;

        public UnmaskRequest(SortedSet<Integer> survivors, SortedSet<Integer> dropped) {
            this.survivors = Collections.unmodifiableSortedSet(new TreeSet<>(survivors));
            this.dropped = Collections.unmodifiableSortedSet(new TreeSet<>(dropped));
        }

        public static UnmaskRequest fromJson(JsonElement raw) {
            JsonObject o = object(raw, "the unmasking request");
            return new UnmaskRequest(indexList(o, "survivors"), indexList(o, "dropped"));
        }

        @Override
        public boolean equals(Object other) {
            return other instanceof UnmaskRequest && survivors.equals(((UnmaskRequest) other).survivors)
                    && dropped.equals(((UnmaskRequest) other).dropped);
        }

        @Override
        public int hashCode() {
            return survivors.hashCode() * 31 + dropped.hashCode();
        }
    }

    public static final class RevealedShare {
        public final int owner;
        public final String kind; // SELF_MASK or MASK_KEY
        public final byte[] share;

        public RevealedShare(int owner, String kind, byte[] share) {
            this.owner = owner;
            this.kind = kind;
            this.share = share.clone();
        }

        public JsonObject toJson() {
            JsonObject out = new JsonObject();
            out.addProperty("owner", owner);
            out.addProperty("kind", kind);
            out.addProperty("share", b64(share));
            return out;
        }
    }

    /** What the coordinator tells one device about the round's SecAgg state (GET .../secagg). */
    public static final class View {
        public final String state;
        public final int myIndex;
        public final Params params; // null until advertising closed
        public final Map<Integer, PublicKeys> keys;
        public final SortedSet<Integer> sharers; // who sent shares (U2), once sharing closed
        public final List<EncryptedShare> inbox;
        public final UnmaskRequest unmask; // null unless unmasking
        public final String reason;

        private View(JsonObject raw) {
            state = Json.string(raw, "state");
            myIndex = Json.integer(raw, "my_index", 0);
            reason = Json.string(raw, "reason", "");
            Map<Integer, PublicKeys> roster = new TreeMap<>();
            if (raw.has("params")) {
                params = Params.fromJson(Json.child(raw, "params"));
                for (Map.Entry<String, JsonElement> e : Json.child(raw, "keys").entrySet()) {
                    int i;
                    try {
                        i = Integer.parseInt(e.getKey());
                    } catch (NumberFormatException ex) {
                        throw new ProtocolException("roster keys must be indexed by integers", "bad_response");
                    }
                    roster.put(i, PublicKeys.fromJson(e.getValue()));
                }
            } else {
                params = null;
            }
            keys = Collections.unmodifiableMap(roster);
            List<EncryptedShare> shares = new ArrayList<>();
            if (raw.has("sharers")) {
                sharers = indexList(raw, "sharers");
                for (JsonElement item : Json.array(raw, "inbox")) {
                    shares.add(EncryptedShare.fromJson(item));
                }
            } else {
                sharers = Collections.unmodifiableSortedSet(new TreeSet<>());
            }
            inbox = Collections.unmodifiableList(shares);
            unmask = raw.has("unmask") && !raw.get("unmask").isJsonNull() ? UnmaskRequest.fromJson(raw.get("unmask"))
                    : null;
        }

        public static View fromJson(JsonObject raw) {
            return new View(raw);
        }
    }

    public static JsonObject sharesMessage(List<JsonObject> items) {
        JsonArray array = new JsonArray();
        for (JsonObject item : items) {
            array.add(item);
        }
        JsonObject out = new JsonObject();
        out.add("shares", array);
        return out;
    }

    static String b64(byte[] data) {
        return Base64.getEncoder().encodeToString(data);
    }

    private static byte[] unb64(JsonObject raw, String name, int size) {
        byte[] data;
        try {
            data = Base64.getDecoder().decode(Json.string(raw, name));
        } catch (IllegalArgumentException e) {
            throw new ProtocolException("field '" + name + "' is not valid base64", "bad_response");
        }
        if (size >= 0 && data.length != size) {
            throw new ProtocolException("field '" + name + "' must be " + size + " bytes", "bad_response");
        }
        return data;
    }

    private static long unsignedLong(JsonObject raw, String name) {
        JsonElement value = raw.get(name);
        try {
            if (value == null || !value.isJsonPrimitive() || !value.getAsJsonPrimitive().isNumber()) {
                throw new NumberFormatException();
            }
            return Long.parseUnsignedLong(value.getAsString()); // seeds go up to 2^63
        } catch (NumberFormatException e) {
            throw new ProtocolException("field '" + name + "' must be an unsigned 64-bit integer", "bad_response");
        }
    }

    private static JsonObject object(JsonElement raw, String what) {
        if (raw == null || !raw.isJsonObject()) {
            throw new ProtocolException(what + " must be a JSON object", "bad_response");
        }
        return raw.getAsJsonObject();
    }

    private static int index(JsonObject raw, String name) {
        return inRange(Json.integer(raw, name, null), name);
    }

    private static int inRange(int value, String name) {
        if (value < 1 || value > MAX_INDEX) {
            throw new ProtocolException("field '" + name + "' must be a roster index in [1, " + MAX_INDEX + "]",
                    "bad_response");
        }
        return value;
    }

    private static SortedSet<Integer> indexList(JsonObject raw, String name) {
        List<Integer> values = new ArrayList<>();
        for (JsonElement item : Json.array(raw, name)) {
            values.add(inRange(Json.integerOf(item, name), name));
        }
        if (new HashSet<>(values).size() != values.size()) {
            throw new ProtocolException("field '" + name + "' has duplicates", "bad_response");
        }
        return Collections.unmodifiableSortedSet(new TreeSet<>(values));
    }
}
