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
        // Every bounded number is checked against PlanBounds (protocol.messages.PLAN_BOUNDS).
        epochs = PlanBounds.checkInt("epochs", Json.integer(raw, "epochs", null));
        batchSize = PlanBounds.checkInt("batch_size", Json.integer(raw, "batch_size", null));
        learningRate = PlanBounds.check("learning_rate", Json.number(raw, "learning_rate", null));
        codec = Json.string(raw, "codec");
        chunkSize = PlanBounds.checkInt("chunk_size", Json.integer(raw, "chunk_size", null));
        clipNorm = Json.number(raw, "clip_norm", 0.0);
        maxExamples = Json.integer(raw, "max_examples", 0);
        secagg = Json.string(raw, "secagg", "");
        reportClipBit = Json.bool(raw, "report_clip_bit", false);
        proximalMu = PlanBounds.check("proximal_mu", Json.number(raw, "proximal_mu", 0.0));
        maxLocalSeconds = PlanBounds.check("max_local_seconds", Json.number(raw, "max_local_seconds", 0.0));
        partialWork = Json.bool(raw, "partial_work", false);
        evaluateOnly = Json.bool(raw, "evaluate_only", false);
        personalizeSteps = PlanBounds.checkInt("personalize_steps", Json.integer(raw, "personalize_steps", 0));
        scaffold = Json.bool(raw, "scaffold", false);
        sgdMomentum = PlanBounds.check("sgd_momentum", Json.number(raw, "sgd_momentum", 0.0));
        sgdNesterov = Json.bool(raw, "sgd_nesterov", false);
        double seed = PlanBounds.check("sparse_seed", Json.number(raw, "sparse_seed", 0.0));
        if (seed != Math.rint(seed)) {
            throw new ProtocolException("field 'sparse_seed' must be an integer", "bad_request");
        }
        sparseSeed = (long) seed;
        dpSgdNoiseMultiplier = PlanBounds.check("dp_sgd_noise_multiplier",
                Json.number(raw, "dp_sgd_noise_multiplier", 0.0));
        dpSgdClip = PlanBounds.check("dp_sgd_clip", Json.number(raw, "dp_sgd_clip", 0.0));
        dpSgdDelta = PlanBounds.check("dp_sgd_delta", Json.number(raw, "dp_sgd_delta", 1e-5));
        if (dpSgdNoiseMultiplier > 0 && dpSgdClip <= 0) {
            throw new ProtocolException("dp_sgd_noise_multiplier needs dp_sgd_clip > 0", "bad_request");
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
