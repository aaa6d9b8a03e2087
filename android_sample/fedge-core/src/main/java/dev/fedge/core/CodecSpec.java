package dev.fedge.core;

/** Which update codec a plan asks for: f32, q8 or q4, optionally "+rot"; chunk size C. */
public final class CodecSpec {
    public static final int HEADER_BYTES = 24;
    /** After the tensor table of a sparse payload: u64 sparse seed, u32 kept count. */
    public static final int SPARSE_HEADER_BYTES = 12;

    public final String kind;
    public final boolean rotate;
    public final int chunkSize;
    /** The kept fraction F of "+sparse:F" (a round-shared subset of the coordinates); 0: every coordinate. */
    public final double sparse;
    /** The kept fraction F of "+topk:F" (the largest coordinates, indices on the wire); 0: none. */
    public final double topk;

    private CodecSpec(String kind, boolean rotate, int chunkSize, double sparse, double topk) {
        this.kind = kind;
        this.rotate = rotate;
        this.chunkSize = chunkSize;
        this.sparse = sparse;
        this.topk = topk;
    }

    /** Parses a plan's codec name; the same rules as protocol.codec.CodecSpec.parse. */
    public static CodecSpec parse(String text, int chunkSize) {
        String[] parts = text.split("\\+", -1);
        String kind = parts[0];
        int next = 1;
        boolean rotate = parts.length > next && parts[next].equals("rot");
        if (rotate) {
            next++;
        }
        double fraction = 0;
        boolean topk = false;
        if (parts.length > next && (parts[next].startsWith("sparse:") || parts[next].startsWith("topk:"))) {
            String label = parts[next].substring(0, parts[next].indexOf(':'));
            try {
                fraction = Double.parseDouble(parts[next].substring(label.length() + 1));
            } catch (NumberFormatException e) {
                fraction = -1;
            }
            if (!(fraction > 0 && fraction < 1)) {
                throw new ProtocolException("codec '" + text + "': the " + label + " fraction must be a number in "
                        + "(0, 1), e.g. q4+" + label + ":0.1", "bad_codec");
            }
            topk = label.equals("topk");
            next++;
        }
        if (!(kind.equals("f32") || kind.equals("q8") || kind.equals("q4")) || parts.length != next) {
            throw new ProtocolException("unknown codec '" + text + "'; use f32, q8 or q4, then optionally +rot, then "
                    + "optionally +sparse:F or +topk:F (e.g. q8+rot+sparse:0.1, q8+topk:0.01)", "bad_codec");
        }
        if (kind.equals("f32") && rotate) {
            throw new ProtocolException("rotation only applies to quantized codecs", "bad_codec");
        }
        if (topk && rotate) {
            throw new ProtocolException("top-k keeps the largest coordinates, which a rotation spreads out: use "
                    + "q8+topk:F without +rot", "bad_codec");
        }
        if (chunkSize < 1 || chunkSize > (1 << 20) || (rotate && (chunkSize & (chunkSize - 1)) != 0)) {
            throw new ProtocolException("chunk_size must be in [1, 2^20], and a power of two with rotation", "bad_codec");
        }
        return new CodecSpec(kind, rotate, chunkSize, topk ? 0 : fraction, topk ? fraction : 0);
    }

    /** What a payload's header says: the kind, "+rot", "+sparse" (a sparse payload carries m, not F). */
    public String wireName() {
        return kind + (rotate ? "+rot" : "") + (sparse > 0 ? "+sparse" : "") + (topk > 0 ? "+topk" : "");
    }

    /** Codec id in the header: 0 float32, 1 8-bit, 2 4-bit. */
    public int codecId() {
        return kind.equals("f32") ? 0 : kind.equals("q8") ? 1 : 2;
    }

    public int bits() {
        return kind.equals("f32") ? 32 : kind.equals("q8") ? 8 : 4;
    }

    /** L: the coordinates (the value count, padded to whole chunks when rotating). */
    public long paddedLength(long numValues) {
        return rotate ? ceilDiv(numValues, chunkSize) * chunkSize : numValues;
    }

    /** How many coordinates travel: m = ceil(F L) when sparse, else all L. */
    public long kept(long numValues) {
        long length = paddedLength(numValues);
        double fraction = sparse > 0 ? sparse : topk;
        return fraction > 0 ? SparseSubset.keptCount(fraction, length) : length;
    }

    /** Exact size of an encoded update with these tensor and value counts. */
    public long payloadBytes(int numTensors, long numValues) {
        long length = kept(numValues);
        long header = HEADER_BYTES + 4L * numTensors + (sparse > 0 ? SPARSE_HEADER_BYTES : 0)
                + (topk > 0 ? 4 + 4 * length : 0); // top-k: m, then the m indices
        if (kind.equals("f32")) {
            return header + 4 * length;
        }
        long chunks = ceilDiv(length, chunkSize);
        long codes = bits() == 8 ? length : ceilDiv(length, 2);
        return header + 8 * chunks + codes;
    }

    static long ceilDiv(long a, long b) {
        return (a + b - 1) / b;
    }

    @Override
    public String toString() {
        return wireName() + (sparse > 0 ? ":" + sparse : topk > 0 ? ":" + topk : "") + "/" + chunkSize;
    }
}
