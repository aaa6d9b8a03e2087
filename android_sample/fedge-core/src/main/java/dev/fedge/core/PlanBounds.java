package dev.fedge.core;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;

/**
 * The bounds a device holds a plan's numbers to, read from plan_bounds.json, which the build
 * packages beside this class from protocol/golden (written from protocol.messages.PLAN_BOUNDS):
 * the numbers are declared once, in Python, and never copied into Java.
 */
final class PlanBounds {
    static final String RESOURCE = "plan_bounds.json";
    private static final Map<String, double[]> BOUNDS = load();

    private PlanBounds() {
    }

    private static Map<String, double[]> load() {
        try (InputStream in = PlanBounds.class.getResourceAsStream(RESOURCE)) {
            if (in == null) {
                throw new IllegalStateException("dev/fedge/core/" + RESOURCE + " is missing from the classpath: the "
                        + "build packages it from protocol/golden");
            }
            Map<String, double[]> out = new HashMap<>();
            try (Reader reader = new InputStreamReader(in, StandardCharsets.UTF_8)) {
                JsonObject raw = com.google.gson.JsonParser.parseReader(reader).getAsJsonObject();
                for (Map.Entry<String, JsonElement> e : raw.entrySet()) {
                    JsonArray pair = e.getValue().getAsJsonArray();
                    out.put(e.getKey(), new double[] {pair.get(0).getAsDouble(), pair.get(1).getAsDouble()});
                }
            }
            return out;
        } catch (IOException e) {
            throw new IllegalStateException("cannot read dev/fedge/core/" + RESOURCE, e);
        }
    }

    /** The bounded names, for tests. */
    static Map<String, double[]> all() {
        return java.util.Collections.unmodifiableMap(BOUNDS);
    }

    /** {@code value} if it lies in the declared bounds of {@code name}; a ProtocolException otherwise. */
    static double check(String name, double value) {
        double[] b = BOUNDS.get(name);
        if (b == null) {
            throw new IllegalStateException("no declared bounds for plan field '" + name + "'");
        }
        if (!(value >= b[0] && value <= b[1])) {
            throw new ProtocolException("field '" + name + "' must be in [" + fmt(b[0]) + ", " + fmt(b[1]) + "]",
                    "bad_request");
        }
        return value;
    }

    static int checkInt(String name, int value) {
        check(name, value);
        return value;
    }

    private static String fmt(double x) {
        return x == Math.rint(x) && Math.abs(x) < 1e15 ? Long.toString((long) x) : Double.toString(x);
    }
}
