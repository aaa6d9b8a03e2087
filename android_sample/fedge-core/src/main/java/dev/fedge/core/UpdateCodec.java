package dev.fedge.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;

/**
 * The FEDU update format of protocol/codec.py (its docstring is the specification):
 * float32, or 8/4-bit unbiased stochastic quantization per chunk of C values with a
 * (min, step) header per chunk, optionally after a randomized Hadamard rotation, optionally
 * of a round-shared subset of the coordinates only ({@link SparseSubset}).
 * Given the same draws, {@link #encode} writes the same bytes as the Python encoder.
 */
public final class UpdateCodec {
    private static final byte[] MAGIC = "FEDU".getBytes(StandardCharsets.US_ASCII);
    private static final int FORMAT_VERSION = 1;
    private static final int FLAG_ROTATE = 1;
    private static final int FLAG_SPARSE = 2;
    private static final int FLAG_TOPK = 4;

    private UpdateCodec() {
    }

    /** A decoded update: flat float32 values in manifest order and each tensor's size. */
    public static final class Decoded {
        public final float[] values;
        public final int[] counts;
        /** The wire name: f32, q8 or q4, with "+rot", with "+sparse". */
        public final String codec;
        /** Sparse: how many coordinates travelled (0 when dense). */
        public final int kept;
        /** Sparse: the seed the payload says its round gave. */
        public final long sparseSeed;

        public Decoded(float[] values, int[] counts, String codec, int kept, long sparseSeed) {
            this.values = values;
            this.counts = counts;
            this.codec = codec;
            this.kept = kept;
            this.sparseSeed = sparseSeed;
        }
    }

    /** Encodes a dense update (see the sparse overload). */
    public static byte[] encode(float[] flat, int[] counts, CodecSpec spec, Uniforms uniforms, long rotationSeed) {
        return encode(flat, counts, spec, uniforms, rotationSeed, 0L);
    }

    /**
     * Encodes {@code flat} (the tensors flattened and concatenated; {@code counts} their sizes).
     * {@code rotationSeed} is used only by "+rot" codecs (a random non-zero seed in production);
     * {@code sparseSeed} only by "+sparse:F" codecs (the round's, from the plan).
     */
    public static byte[] encode(float[] flat, int[] counts, CodecSpec spec, Uniforms uniforms, long rotationSeed,
                                long sparseSeed) {
        long total = 0;
        for (int c : counts) {
            total += c;
        }
        if (total != flat.length) {
            throw new IllegalArgumentException("counts sum to " + total + " but there are " + flat.length + " values");
        }
        for (float v : flat) {
            if (!Float.isFinite(v)) {
                throw new ProtocolException("update has non-finite values", "non_finite");
            }
        }
        int n = flat.length;
        boolean sparse = spec.sparse > 0;
        boolean topk = spec.topk > 0;
        ByteBuffer out = ByteBuffer.allocate((int) spec.payloadBytes(counts.length, n)).order(ByteOrder.LITTLE_ENDIAN);
        out.put(MAGIC).put((byte) FORMAT_VERSION).put((byte) spec.codecId())
                .put((byte) ((spec.rotate ? FLAG_ROTATE : 0) | (sparse ? FLAG_SPARSE : 0) | (topk ? FLAG_TOPK : 0)))
                .put((byte) 0).putInt(counts.length).putInt(spec.kind.equals("f32") ? 0 : spec.chunkSize)
                .putLong(spec.rotate ? rotationSeed : 0L);
        for (int c : counts) {
            out.putInt(c);
        }
        int c = spec.chunkSize;
        int length = (int) spec.paddedLength(n);
        float[] values = flat;
        if (spec.rotate) {
            float[] signs = Rotation.signs(rotationSeed, length);
            float[] padded = new float[length];
            for (int i = 0; i < n; i++) {
                padded[i] = flat[i] * signs[i];
            }
            values = Rotation.hadamardChunks(padded, c);
        }
        if (sparse) {
            int kept = (int) spec.kept(n);
            int[] positions = SparseSubset.positions(sparseSeed, length, kept);
            float[] subset = new float[kept];
            for (int i = 0; i < kept; i++) {
                subset[i] = values[positions[i]];
            }
            out.putLong(sparseSeed).putInt(kept);
            values = subset;
            length = kept;
        } else if (topk) {
            int kept = (int) spec.kept(n);
            int[] indices = topKIndices(values, kept);
            float[] subset = new float[kept];
            out.putInt(kept);
            for (int i = 0; i < kept; i++) {
                out.putInt(indices[i]);
                subset[i] = values[indices[i]];
            }
            values = subset;
            length = kept;
        }
        if (spec.kind.equals("f32")) {
            for (int i = 0; i < length; i++) {
                out.putFloat(values[i]);
            }
            return out.array();
        }
        int chunks = (int) CodecSpec.ceilDiv(length, c);
        int levels = (1 << spec.bits()) - 1;
        int[] codes = new int[length];
        for (int k = 0; k < chunks; k++) {
            int start = k * c;
            int end = Math.min(start + c, length);
            float lo = values[start];
            float hi = values[start];
            for (int i = start; i < end; i++) {
                lo = Math.min(lo, values[i]);
                hi = Math.max(hi, values[i]);
            }
            float step = (hi - lo) / (float) levels;
            float safe = step > 0f ? step : 1f;
            out.putFloat(lo).putFloat(step);
            // One draw per grid cell, the last chunk's edge padding included (as the Python side draws them).
            for (int i = start; i < start + c; i++) {
                float u = uniforms.next();
                if (i < end) {
                    float scaled = (values[i] - lo) / safe;
                    int code = (int) Math.floor(scaled + u);
                    codes[i] = Math.max(0, Math.min(levels, code));
                }
            }
        }
        if (spec.bits() == 8) {
            for (int code : codes) {
                out.put((byte) code);
            }
        } else {
            for (int i = 0; i < length; i += 2) {
                int low = codes[i];
                int high = i + 1 < length ? codes[i + 1] : 0;
                out.put((byte) (low | (high << 4)));
            }
        }
        return out.array();
    }

    /** The {@code kept} indices of largest magnitude (ties: the lower index first), increasing. */
    public static int[] topKIndices(float[] values, int kept) {
        Integer[] order = new Integer[values.length];
        for (int i = 0; i < order.length; i++) {
            order[i] = i;
        }
        java.util.Arrays.sort(order, (a, b) -> {
            int byMagnitude = Double.compare(Math.abs((double) values[b]), Math.abs((double) values[a]));
            return byMagnitude != 0 ? byMagnitude : Integer.compare(a, b);
        });
        int[] out = new int[kept];
        for (int i = 0; i < kept; i++) {
            out[i] = order[i];
        }
        java.util.Arrays.sort(out);
        return out;
    }

    /** Decodes and validates a payload; with {@code expectedCounts} the tensor sizes must match. */
    public static Decoded decode(byte[] payload, int[] expectedCounts) {
        if (payload.length < CodecSpec.HEADER_BYTES) {
            throw new ProtocolException("update payload is shorter than its header", "bad_payload");
        }
        ByteBuffer in = ByteBuffer.wrap(payload).order(ByteOrder.LITTLE_ENDIAN);
        byte[] magic = new byte[4];
        in.get(magic);
        if (!java.util.Arrays.equals(magic, MAGIC)) {
            throw new ProtocolException("update payload has a bad magic number (expected FEDU)", "bad_payload");
        }
        int version = in.get() & 0xFF;
        int codecId = in.get() & 0xFF;
        int flags = in.get() & 0xFF;
        int reserved = in.get() & 0xFF;
        long tensors = in.getInt() & 0xFFFFFFFFL;
        long chunk = in.getInt() & 0xFFFFFFFFL;
        long seed = in.getLong();
        if (version != FORMAT_VERSION) {
            throw new ProtocolException("unsupported update format version " + version, "bad_payload");
        }
        if (codecId > 2 || reserved != 0 || (flags & ~(FLAG_ROTATE | FLAG_SPARSE | FLAG_TOPK)) != 0
                || (codecId == 0 && (flags & FLAG_ROTATE) != 0)
                || ((flags & FLAG_TOPK) != 0 && (flags & (FLAG_ROTATE | FLAG_SPARSE)) != 0)) {
            throw new ProtocolException("update payload has an unknown codec or flags", "bad_payload");
        }
        boolean rotate = (flags & FLAG_ROTATE) != 0;
        boolean sparse = (flags & FLAG_SPARSE) != 0;
        boolean topk = (flags & FLAG_TOPK) != 0;
        int extra = sparse ? CodecSpec.SPARSE_HEADER_BYTES : topk ? 4 : 0;
        if (tensors > (1 << 16) || payload.length < CodecSpec.HEADER_BYTES + 4 * tensors + extra) {
            throw new ProtocolException("update payload tensor table is truncated", "bad_payload");
        }
        int[] counts = new int[(int) tensors];
        long n = 0;
        for (int t = 0; t < tensors; t++) {
            long count = in.getInt() & 0xFFFFFFFFL;
            if (count > Integer.MAX_VALUE) {
                throw new ProtocolException("tensor too large", "bad_payload");
            }
            counts[t] = (int) count;
            n += count;
        }
        if (n > Integer.MAX_VALUE) {
            throw new ProtocolException("update too large", "bad_payload");
        }
        if (expectedCounts != null && !java.util.Arrays.equals(counts, expectedCounts)) {
            throw new ProtocolException("update tensor sizes do not match the model's", "shape_mismatch");
        }
        String kind = codecId == 0 ? "f32" : codecId == 1 ? "q8" : "q4";
        if (!kind.equals("f32") && (chunk < 1 || chunk > (1 << 20) || (rotate && (chunk & (chunk - 1)) != 0))) {
            throw new ProtocolException("update payload has a bad chunk size", "bad_payload");
        }
        CodecSpec spec = CodecSpec.parse(kind + (rotate ? "+rot" : ""), kind.equals("f32") ? 256 : (int) chunk);
        int length = (int) spec.paddedLength(n);
        long sparseSeed = 0;
        int kept = length;
        int[] positions = null;
        if (sparse) {
            sparseSeed = in.getLong();
            long keptRaw = in.getInt() & 0xFFFFFFFFL;
            if (keptRaw > length) {
                throw new ProtocolException("a sparse update keeps " + keptRaw + " of " + length + " coordinates",
                        "bad_payload");
            }
            kept = (int) keptRaw;
            positions = SparseSubset.positions(sparseSeed, length, kept);
        } else if (topk) {
            long keptRaw = in.getInt() & 0xFFFFFFFFL;
            if (keptRaw == 0 || keptRaw > length || payload.length < in.position() + 4 * keptRaw) {
                throw new ProtocolException("a top-k update keeps " + keptRaw + " of " + length + " coordinates",
                        "bad_payload");
            }
            kept = (int) keptRaw;
            positions = new int[kept];
            for (int i = 0; i < kept; i++) {
                long index = in.getInt() & 0xFFFFFFFFL;
                if (index >= length || (i > 0 && index <= positions[i - 1])) {
                    throw new ProtocolException("a top-k update's indices must increase strictly and stay below the "
                            + "update's length", "bad_payload");
                }
                positions[i] = (int) index;
            }
        }
        int body = in.position();
        long expected = kind.equals("f32") ? body + 4L * kept
                : body + 8 * CodecSpec.ceilDiv(kept, chunk) + (spec.bits() == 8 ? kept : CodecSpec.ceilDiv(kept, 2));
        if (payload.length != expected) {
            throw new ProtocolException(kind + " update is " + payload.length + " bytes, expected " + expected,
                    "bad_payload");
        }
        float[] values = new float[kept];
        if (kind.equals("f32")) {
            for (int i = 0; i < kept; i++) {
                values[i] = in.getFloat();
            }
        } else {
            int chunks = (int) CodecSpec.ceilDiv(kept, chunk);
            float[] lo = new float[chunks];
            float[] step = new float[chunks];
            for (int k = 0; k < chunks; k++) {
                lo[k] = in.getFloat();
                step[k] = in.getFloat();
            }
            for (int i = 0; i < kept; i++) {
                int code;
                if (spec.bits() == 8) {
                    code = payload[in.position() + i] & 0xFF;
                } else {
                    int packed = payload[in.position() + i / 2] & 0xFF;
                    code = (i % 2 == 0) ? packed & 0x0F : packed >> 4;
                }
                int k = (int) (i / chunk);
                values[i] = lo[k] + (float) code * step[k];
            }
        }
        if (sparse || topk) {
            // Sparse: scaled by float32(L / m), as the Python decoder; top-k: unscaled.
            float scale = sparse ? (float) ((double) length / kept) : 1f;
            float[] full = new float[length];
            for (int i = 0; i < kept; i++) {
                full[positions[i]] = sparse ? values[i] * scale : values[i];
            }
            values = full;
        }
        if (rotate) {
            float[] rotated = Rotation.hadamardChunks(values, (int) chunk);
            float[] signs = Rotation.signs(seed, length);
            for (int i = 0; i < length; i++) {
                values[i] = rotated[i] * signs[i];
            }
        }
        String name = kind + (rotate ? "+rot" : "") + (sparse ? "+sparse" : "") + (topk ? "+topk" : "");
        return new Decoded(checkFinite(java.util.Arrays.copyOf(values, (int) n)), counts, name,
                sparse || topk ? kept : 0, sparseSeed);
    }

    private static float[] checkFinite(float[] values) {
        for (float v : values) {
            if (!Float.isFinite(v)) {
                throw new ProtocolException("update has non-finite values", "non_finite");
            }
        }
        return values;
    }
}
