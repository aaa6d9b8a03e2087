package dev.fedge.core;

import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;

/** Models and checkpoints by content hash, so a device downloads each only once. */
public interface BlobCache {
    byte[] get(String sha256);

    void put(String sha256, byte[] data);

    /** Hashes held, reported at check-in as cached_models. */
    List<String> keys();

    /** A folder of files named by hash (on Android: the app's cache dir); writes are atomic renames. */
    final class Directory implements BlobCache {
        private final File dir;

        public Directory(File dir) {
            if (!dir.isDirectory() && !dir.mkdirs()) {
                throw new IllegalArgumentException("cannot create cache folder " + dir);
            }
            this.dir = dir;
        }

        private static boolean isHash(String sha) {
            return sha.matches("[0-9a-f]{64}");
        }

        @Override
        public byte[] get(String sha256) {
            File file = new File(dir, sha256);
            if (!isHash(sha256) || !file.isFile()) {
                return null;
            }
            try {
                return Files.readAllBytes(file.toPath());
            } catch (IOException e) {
                return null;
            }
        }

        @Override
        public void put(String sha256, byte[] data) {
            if (!isHash(sha256)) {
                throw new IllegalArgumentException("not a SHA-256 hex digest: " + sha256);
            }
            try {
                File tmp = File.createTempFile(sha256, ".part", dir);
                Files.write(tmp.toPath(), data);
                Files.move(tmp.toPath(), new File(dir, sha256).toPath(), StandardCopyOption.REPLACE_EXISTING,
                        StandardCopyOption.ATOMIC_MOVE);
            } catch (IOException e) {
                throw new IllegalStateException("cannot write " + sha256 + " to " + dir, e);
            }
        }

        @Override
        public List<String> keys() {
            List<String> out = new ArrayList<>();
            String[] names = dir.list();
            if (names != null) {
                for (String name : names) {
                    if (isHash(name)) {
                        out.add(name);
                    }
                }
            }
            return out;
        }
    }
}
