package dev.fedge.core;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;

/** Strict field access for the protocol's JSON, like protocol.messages.get_field: no silent coercion. */
public final class Json {
    private Json() {
    }

    public static JsonObject object(String text) {
        try {
            JsonElement root = JsonParser.parseString(text);
            if (!root.isJsonObject()) {
                throw new ProtocolException("expected a JSON object", "bad_response");
            }
            return root.getAsJsonObject();
        } catch (com.google.gson.JsonParseException e) {
            throw new ProtocolException("malformed JSON: " + e.getMessage(), "bad_response");
        }
    }

    private static JsonPrimitive primitive(JsonObject raw, String name, boolean required) {
        JsonElement value = raw.get(name);
        if (value == null || value.isJsonNull()) {
            if (required) {
                throw new ProtocolException("missing field '" + name + "'", "bad_response");
            }
            return null;
        }
        if (!value.isJsonPrimitive()) {
            throw new ProtocolException("field '" + name + "' must be a scalar", "bad_response");
        }
        return value.getAsJsonPrimitive();
    }

    public static String string(JsonObject raw, String name) {
        JsonPrimitive p = primitive(raw, name, true);
        if (!p.isString()) {
            throw new ProtocolException("field '" + name + "' must be a string", "bad_response");
        }
        return p.getAsString();
    }

    public static String string(JsonObject raw, String name, String fallback) {
        return raw.has(name) && !raw.get(name).isJsonNull() ? string(raw, name) : fallback;
    }

    public static double number(JsonObject raw, String name, Double fallback) {
        JsonPrimitive p = primitive(raw, name, fallback == null);
        if (p == null) {
            return fallback;
        }
        if (!p.isNumber()) {
            throw new ProtocolException("field '" + name + "' must be a number", "bad_response");
        }
        return p.getAsDouble();
    }

    public static int integer(JsonObject raw, String name, Integer fallback) {
        JsonPrimitive p = primitive(raw, name, fallback == null);
        return p == null ? fallback : integerOf(p, name);
    }

    /** An integer value (a field's, or a list item's) with no silent truncation of 1.5 or "1". */
    public static int integerOf(JsonElement element, String name) {
        JsonPrimitive p = element != null && element.isJsonPrimitive() ? element.getAsJsonPrimitive() : null;
        double value = p != null && p.isNumber() ? p.getAsDouble() : Double.NaN;
        if (value != Math.rint(value) || Math.abs(value) > Integer.MAX_VALUE || p.getAsString().contains(".")) {
            throw new ProtocolException("field '" + name + "' must be an integer", "bad_response");
        }
        return (int) value;
    }

    public static boolean bool(JsonObject raw, String name, Boolean fallback) {
        JsonPrimitive p = primitive(raw, name, fallback == null);
        if (p == null) {
            return fallback;
        }
        if (!p.isBoolean()) {
            throw new ProtocolException("field '" + name + "' must be a boolean", "bad_response");
        }
        return p.getAsBoolean();
    }

    public static JsonObject child(JsonObject raw, String name) {
        JsonElement value = raw.get(name);
        if (value == null || !value.isJsonObject()) {
            throw new ProtocolException("field '" + name + "' must be an object", "bad_response");
        }
        return value.getAsJsonObject();
    }

    public static JsonArray array(JsonObject raw, String name) {
        JsonElement value = raw.get(name);
        if (value == null || !value.isJsonArray()) {
            throw new ProtocolException("field '" + name + "' must be a list", "bad_response");
        }
        return value.getAsJsonArray();
    }
}
