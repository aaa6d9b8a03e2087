package dev.fedge.core;

import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.StandardCopyOption;

/**
 * What a device keeps between rounds and across restarts (an Android job runs in a fresh
 * process each time): float32 arrays by name in a folder of the app's own storage, written to
 * a temporary file and renamed, so a crash leaves the old value or the new one. Never uploaded.
 */
public final class LocalState {
    private final File dir;

    public LocalState(File dir) {
        this.dir = dir;
    }

    private File file(String name) {
        if (!name.matches("[A-Za-z0-9._-]{1,120}")) {
            throw new IllegalArgumentException("bad state name " + name);
        }
        return new File(dir, name + ".f32");
    }

    /** The array saved under {@code name}, or null. */
    public float[] load(String name) throws IOException {
        File f = file(name);
        if (!f.exists()) {
            return null;
        }
        ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(f.toPath())).order(ByteOrder.LITTLE_ENDIAN);
        float[] out = new float[b.remaining() / 4];
        for (int i = 0; i < out.length; i++) {
            out[i] = b.getFloat();
        }
        return out;
    }

    public void save(String name, float[] values) throws IOException {
        if (!dir.isDirectory() && !dir.mkdirs()) {
            throw new IOException("cannot create " + dir);
        }
        ByteBuffer b = ByteBuffer.allocate(4 * values.length).order(ByteOrder.LITTLE_ENDIAN);
        for (float v : values) {
            b.putFloat(v);
        }
        File tmp = new File(dir, file(name).getName() + ".tmp");
        Files.write(tmp.toPath(), b.array());
        Files.move(tmp.toPath(), file(name).toPath(), StandardCopyOption.REPLACE_EXISTING,
                StandardCopyOption.ATOMIC_MOVE);
    }
}
