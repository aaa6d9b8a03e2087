package dev.fedge.core;

import com.google.gson.JsonElement;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;

/** Reads protocol/golden/ (written by `python -m protocol.golden`), shared with the Python tests. */
public final class Golden {
    private Golden() {
    }

    public static Path dir() {
        String configured = System.getProperty("fedge.golden");
        if (configured != null) {
            return Paths.get(configured);
        }
        // Running from android_sample/fedge-core (Gradle) or the repository root.
        for (String candidate : new String[] {"../../protocol/golden", "protocol/golden"}) {
            if (Files.isDirectory(Paths.get(candidate))) {
                return Paths.get(candidate);
            }
        }
        throw new IllegalStateException("protocol/golden not found; pass -Dfedge.golden=PATH");
    }

    public static JsonElement load(String name) throws IOException {
        return JsonParser.parseString(new String(Files.readAllBytes(dir().resolve(name)), StandardCharsets.UTF_8));
    }

    public static byte[] bytes(String hex) {
        byte[] out = new byte[hex.length() / 2];
        for (int i = 0; i < out.length; i++) {
            out[i] = (byte) Integer.parseInt(hex.substring(2 * i, 2 * i + 2), 16);
        }
        return out;
    }

    public static String hex(byte[] data) {
        StringBuilder out = new StringBuilder();
        for (byte b : data) {
            out.append(String.format("%02x", b));
        }
        return out.toString();
    }

    public static float[] floats(String hex) {
        ByteBuffer buffer = ByteBuffer.wrap(bytes(hex)).order(ByteOrder.LITTLE_ENDIAN);
        float[] out = new float[buffer.remaining() / 4];
        for (int i = 0; i < out.length; i++) {
            out[i] = buffer.getFloat();
        }
        return out;
    }

    public static String hex(float[] values) {
        ByteBuffer buffer = ByteBuffer.allocate(4 * values.length).order(ByteOrder.LITTLE_ENDIAN);
        for (float v : values) {
            buffer.putFloat(v);
        }
        return hex(buffer.array());
    }
}
