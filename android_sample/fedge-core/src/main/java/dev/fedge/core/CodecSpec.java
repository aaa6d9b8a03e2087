package dev.fedge.core;

/** Which update codec a plan asks for: f32, q8 or q4, optionally "+rot"; chunk size C. */
public final class CodecSpec {
    public static final int HEADER_BYTES = 24;

    public final String kind;
    public final boolean rotate;
    public final int chunkSize;

    private CodecSpec(String kind, boolean rotate, int chunkSize) {
        this.kind = kind;
        this.rotate = rotate;
        this.chunkSize = chunkSize;
    }

    /** Parses a plan's codec name; the same rules as protocol.codec.CodecSpec.parse. */
    public static CodecSpec parse(String text, int chunkSize) {
        String kind = text;
        String extra = "";
        int plus = text.indexOf('+');
        if (plus >= 0) {
            kind = text.substring(0, plus);
            extra = text.substring(plus + 1);
        }
        if (!(kind.equals("f32") || kind.equals("q8") || kind.equals("q4")) || !(extra.isEmpty() || extra.equals("rot"))) {
            throw new ProtocolException("unknown codec '" + text + "'; use f32, q8, q4, q8+rot or q4+rot", "bad_codec");
        }
        boolean rotate = extra.equals("rot");
        if (kind.equals("f32") && rotate) {
            throw new ProtocolException("rotation only applies to quantized codecs", "bad_codec");
        }
        if (chunkSize < 1 || chunkSize > (1 << 20) || (rotate && (chunkSize & (chunkSize - 1)) != 0)) {
            throw new ProtocolException("chunk_size must be in [1, 2^20], and a power of two with rotation", "bad_codec");
        }
        return new CodecSpec(kind, rotate, chunkSize);
    }

    /** Codec id in the header: 0 float32, 1 8-bit, 2 4-bit. */
    public int codecId() {
        return kind.equals("f32") ? 0 : kind.equals("q8") ? 1 : 2;
    }

    public int bits() {
        return kind.equals("f32") ? 32 : kind.equals("q8") ? 8 : 4;
    }

    /** L: the number of codes (the value count, padded to whole chunks when rotating). */
    public long paddedLength(long numValues) {
        return rotate ? ceilDiv(numValues, chunkSize) * chunkSize : numValues;
    }

    /** Exact size of an encoded update with these tensor and value counts. */
    public long payloadBytes(int numTensors, long numValues) {
        long header = HEADER_BYTES + 4L * numTensors;
        if (kind.equals("f32")) {
            return header + 4 * numValues;
        }
        long length = paddedLength(numValues);
        long chunks = ceilDiv(length, chunkSize);
        long codes = bits() == 8 ? length : ceilDiv(length, 2);
        return header + 8 * chunks + codes;
    }

    static long ceilDiv(long a, long b) {
        return (a + b - 1) / b;
    }

    @Override
    public String toString() {
        return kind + (rotate ? "+rot" : "") + "/" + chunkSize;
    }
}
