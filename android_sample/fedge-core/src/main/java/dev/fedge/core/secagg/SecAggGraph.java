package dev.fedge.core.secagg;

import dev.fedge.core.ProtocolException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SortedSet;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * Who shares keys and masks with whom (protocol/secagg/graph.py): everyone with everyone
 * for SecAgg, a random Harary graph for SecAgg+ (the indices on a ring ordered by
 * SHA-256(graph_seed || index u32 LE), each joined to the ceil(degree/2) nearest on each side).
 */
public final class SecAggGraph {
    private SecAggGraph() {
    }

    public static Map<Integer, SortedSet<Integer>> neighbours(int n, int degree, byte[] graphSeed) {
        if (n < 1 || degree < 1) {
            throw new ProtocolException("a SecAgg graph needs n >= 1 and degree >= 1", "bad_params");
        }
        int half = (degree + 1) / 2;
        Map<Integer, SortedSet<Integer>> out = new TreeMap<>();
        if (2 * half >= n - 1) {
            for (int u = 1; u <= n; u++) {
                SortedSet<Integer> all = new TreeSet<>();
                for (int v = 1; v <= n; v++) {
                    if (v != u) {
                        all.add(v);
                    }
                }
                out.put(u, all);
            }
            return out;
        }
        Map<Integer, byte[]> keys = new HashMap<>();
        List<Integer> order = new ArrayList<>();
        for (int i = 1; i <= n; i++) {
            keys.put(i, sha256(graphSeed, i));
            order.add(i);
        }
        Collections.sort(order, (a, b) -> compareUnsigned(keys.get(a), keys.get(b)));
        for (int pos = 0; pos < n; pos++) {
            SortedSet<Integer> near = new TreeSet<>();
            for (int d = -half; d <= half; d++) {
                if (d != 0) {
                    near.add(order.get(Math.floorMod(pos + d, n)));
                }
            }
            out.put(order.get(pos), near);
        }
        return out;
    }

    private static byte[] sha256(byte[] seed, int index) {
        try {
            MessageDigest sha = MessageDigest.getInstance("SHA-256");
            sha.update(seed);
            sha.update(ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(index).array());
            return sha.digest();
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static int compareUnsigned(byte[] a, byte[] b) {
        for (int i = 0; i < a.length; i++) {
            int c = Integer.compare(a[i] & 0xff, b[i] & 0xff);
            if (c != 0) {
                return c;
            }
        }
        return 0;
    }
}
