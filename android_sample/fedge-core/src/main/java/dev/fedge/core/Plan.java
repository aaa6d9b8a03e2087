package dev.fedge.core;

import com.google.gson.JsonObject;

/** What a selected device does this round (protocol.messages.Plan). */
public final class Plan {
    public final int epochs;
    public final int batchSize;
    public final double learningRate;
    public final String codec;
    public final int chunkSize;
    public final double clipNorm;
    public final int maxExamples;
    public final String secagg;
    public final boolean reportClipBit;

    private Plan(JsonObject raw) {
        epochs = Json.integer(raw, "epochs", null);
        batchSize = Json.integer(raw, "batch_size", null);
        learningRate = Json.number(raw, "learning_rate", null);
        codec = Json.string(raw, "codec");
        chunkSize = Json.integer(raw, "chunk_size", null);
        clipNorm = Json.number(raw, "clip_norm", 0.0);
        maxExamples = Json.integer(raw, "max_examples", 0);
        secagg = Json.string(raw, "secagg", "");
        reportClipBit = Json.bool(raw, "report_clip_bit", false);
    }

    public static Plan fromJson(JsonObject raw) {
        return new Plan(raw);
    }

    public CodecSpec codecSpec() {
        return CodecSpec.parse(codec, chunkSize);
    }
}
