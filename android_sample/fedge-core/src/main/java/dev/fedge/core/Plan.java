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
    /** FedProx's mu for the train signature's proximal_mu input (0: FedAvg). */
    public final double proximalMu;
    /** A budget for local training in seconds (0: none). */
    public final double maxLocalSeconds;
    /** Whether work cut short by the budget is uploaded (weighted by the examples processed). */
    public final boolean partialWork;
    /** Federated evaluation: evaluate the checkpoint on the local holdout and report counts, no training. */
    public final boolean evaluateOnly;
    /** Personalized evaluation: fine-tuning steps before a second evaluation (0: none). */
    public final int personalizeSteps;
    /** SCAFFOLD: correct the gradients with c - c_i and upload the control delta after the model delta. */
    public final boolean scaffold;
    /** The exported optimizer's momentum when it is SGD's (SCAFFOLD counts the round's steps by it); 0 otherwise. */
    public final double sgdMomentum;
    public final boolean sgdNesterov;
    /** Sparse codecs ("+sparse:F"): the seed of the round's shared subset (below 2^53); 0 for dense ones. */
    public final long sparseSeed;
    /** Example-level DP-SGD (the file's train_dp): the noise multiplier (0: off), the per-example clip, delta. */
    public final double dpSgdNoiseMultiplier;
    public final double dpSgdClip;
    public final double dpSgdDelta;

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
        proximalMu = Json.number(raw, "proximal_mu", 0.0);
        maxLocalSeconds = Json.number(raw, "max_local_seconds", 0.0);
        partialWork = Json.bool(raw, "partial_work", false);
        evaluateOnly = Json.bool(raw, "evaluate_only", false);
        personalizeSteps = Json.integer(raw, "personalize_steps", 0);
        scaffold = Json.bool(raw, "scaffold", false);
        sgdMomentum = Json.number(raw, "sgd_momentum", 0.0);
        sgdNesterov = Json.bool(raw, "sgd_nesterov", false);
        if (!(sgdMomentum >= 0 && sgdMomentum <= 0.999)) {
            throw new ProtocolException("field 'sgd_momentum' must be in [0, 0.999]", "bad_request");
        }
        double seed = Json.number(raw, "sparse_seed", 0.0);
        if (!(seed >= 0 && seed <= 9007199254740991.0 && seed == Math.rint(seed))) {
            throw new ProtocolException("field 'sparse_seed' must be an integer in [0, 2^53 - 1]", "bad_request");
        }
        sparseSeed = (long) seed;
        dpSgdNoiseMultiplier = Json.number(raw, "dp_sgd_noise_multiplier", 0.0);
        dpSgdClip = Json.number(raw, "dp_sgd_clip", 0.0);
        dpSgdDelta = Json.number(raw, "dp_sgd_delta", 1e-5);
        if (!(dpSgdNoiseMultiplier >= 0 && dpSgdNoiseMultiplier <= 1000) || !(dpSgdClip >= 0 && dpSgdClip <= 1e6)
                || !(dpSgdDelta >= 1e-12 && dpSgdDelta <= 0.1)) {
            throw new ProtocolException("fields 'dp_sgd_noise_multiplier' (in [0, 1000]), 'dp_sgd_clip' (in [0, 1e6]) "
                    + "and 'dp_sgd_delta' (in [1e-12, 0.1]) are out of range", "bad_request");
        }
        if (dpSgdNoiseMultiplier > 0 && dpSgdClip <= 0) {
            throw new ProtocolException("dp_sgd_noise_multiplier needs dp_sgd_clip > 0", "bad_request");
        }
        if (!(proximalMu >= 0 && proximalMu <= 1000)) {
            throw new ProtocolException("field 'proximal_mu' must be in [0, 1000]", "bad_request");
        }
        if (!(maxLocalSeconds >= 0 && maxLocalSeconds <= 86400)) {
            throw new ProtocolException("field 'max_local_seconds' must be in [0, 86400]", "bad_request");
        }
    }

    public static Plan fromJson(JsonObject raw) {
        return new Plan(raw);
    }

    /** Whether this round trains with example-level DP-SGD. */
    public boolean dpSgd() {
        return dpSgdNoiseMultiplier > 0;
    }

    public CodecSpec codecSpec() {
        return CodecSpec.parse(codec, chunkSize);
    }
}
