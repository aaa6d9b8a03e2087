package dev.fedge.core;

/**
 * Delta downloads (protocol.delta_download): the round's checkpoint as the base this device
 * holds (an earlier full download of the task, named at check-in) plus the quantized delta the
 * coordinator made for it. Float32 additions in coordinate order, as Python's
 * (protocol/golden/delta_download.json).
 */
public final class DeltaDownload {
    private DeltaDownload() {
    }

    /** The checkpoint's values and tensor sizes; a delta of other sizes is refused, never broadcast. */
    public static UpdateCodec.Decoded apply(byte[] base, byte[] delta) {
        UpdateCodec.Decoded b = UpdateCodec.decode(base, null);
        UpdateCodec.Decoded d = UpdateCodec.decode(delta, b.counts);
        if (d.kept > 0) {
            throw new ProtocolException("a checkpoint delta is dense: sparse or top-k deltas are not applied",
                    "bad_payload");
        }
        float[] values = new float[b.values.length];
        for (int i = 0; i < values.length; i++) {
            values[i] = b.values[i] + d.values[i];
        }
        return new UpdateCodec.Decoded(values, b.counts, "f32", 0, 0L);
    }
}
