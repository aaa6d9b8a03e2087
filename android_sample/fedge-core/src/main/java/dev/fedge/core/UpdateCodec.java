package dev.fedge.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;

/**
 * The FEDU update format of protocol/codec.py (its docstring is the specification):
 * float32, or 8/4-bit unbiased stochastic quantization per chunk of C values with a
 * (min, step) header per chunk, optionally after a randomized Hadamard rotation.
 * Given the same draws, {@link #encode} writes the same bytes as the Python encoder.
 */
public final class UpdateCodec {
    private static final byte[] MAGIC = "FEDU".getBytes(StandardCharsets.US_ASCII);
    private static final int FORMAT_VERSION = 1;
    private static final int FLAG_ROTATE = 1;

    private UpdateCodec() {
    }

    /** A decoded update: flat float32 values in manifest order and each tensor's size. */
    public static final class Decoded {
        public final float[] values;
        public final int[] counts;
        public final String codec;

        Decoded(float[] values, int[] counts, String codec) {
            this.values = values;
            this.counts = counts;
            this.codec = codec;
        }
    }

    /**
     * Encodes {@code flat} (the tensors flattened and concatenated; {@code counts} their sizes).
     * {@code rotationSeed} is used only by "+rot" codecs (a random non-zero seed in production).
     */
    public static byte[] encode(float[] flat, int[] counts, CodecSpec spec, Uniforms uniforms, long rotationSeed) {
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
        ByteBuffer out = ByteBuffer.allocate((int) spec.payloadBytes(counts.length, n)).order(ByteOrder.LITTLE_ENDIAN);
        out.put(MAGIC).put((byte) FORMAT_VERSION).put((byte) spec.codecId()).put((byte) (spec.rotate ? FLAG_ROTATE : 0))
                .put((byte) 0).putInt(counts.length).putInt(spec.kind.equals("f32") ? 0 : spec.chunkSize)
                .putLong(spec.rotate ? rotationSeed : 0L);
        for (int c : counts) {
            out.putInt(c);
        }
        if (spec.kind.equals("f32")) {
            for (float v : flat) {
                out.putFloat(v);
            }
            return out.array();
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
        if (codecId > 2 || reserved != 0 || (flags & ~FLAG_ROTATE) != 0) {
            throw new ProtocolException("update payload has an unknown codec or flags", "bad_payload");
        }
        boolean rotate = (flags & FLAG_ROTATE) != 0;
        if (tensors > (1 << 16) || payload.length < CodecSpec.HEADER_BYTES + 4 * tensors) {
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
        if (expectedCounts != null && !java.util.Arrays.equals(counts, expectedCounts)) {
            throw new ProtocolException("update tensor sizes do not match the model's", "shape_mismatch");
        }
        String kind = codecId == 0 ? "f32" : codecId == 1 ? "q8" : "q4";
        if (kind.equals("f32")) {
            if (payload.length - in.position() != 4 * n) {
                throw new ProtocolException("float32 update body is " + (payload.length - in.position())
                        + " bytes, expected " + 4 * n, "bad_payload");
            }
            float[] values = new float[(int) n];
            for (int i = 0; i < n; i++) {
                values[i] = in.getFloat();
            }
            return new Decoded(checkFinite(values), counts, kind);
        }
        if (chunk < 1 || chunk > (1 << 20) || (rotate && (chunk & (chunk - 1)) != 0)) {
            throw new ProtocolException("update payload has a bad chunk size", "bad_payload");
        }
        CodecSpec spec = CodecSpec.parse(kind + (rotate ? "+rot" : ""), (int) chunk);
        long expected = spec.payloadBytes((int) tensors, n);
        if (payload.length != expected) {
            throw new ProtocolException(kind + " update is " + payload.length + " bytes, expected " + expected,
                    "bad_payload");
        }
        int length = (int) spec.paddedLength(n);
        int chunks = (int) CodecSpec.ceilDiv(length, chunk);
        float[] lo = new float[chunks];
        float[] step = new float[chunks];
        for (int k = 0; k < chunks; k++) {
            lo[k] = in.getFloat();
            step[k] = in.getFloat();
        }
        float[] values = new float[length];
        for (int i = 0; i < length; i++) {
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
        if (rotate) {
            float[] rotated = Rotation.hadamardChunks(values, (int) chunk);
            float[] signs = Rotation.signs(seed, length);
            for (int i = 0; i < length; i++) {
                values[i] = rotated[i] * signs[i];
            }
        }
        return new Decoded(checkFinite(java.util.Arrays.copyOf(values, (int) n)), counts, spec.kind + (rotate ? "+rot" : ""));
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
