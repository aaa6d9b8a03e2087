package dev.fedge.core;

import com.google.gson.JsonObject;
import dev.fedge.core.dp.DpSgdEvent;

/** Sent with an update as the Fedge-Upload header (protocol.messages.UploadMeta). */
public final class UploadMeta {
    public final int exampleCount;
    public final double trainLoss;
    public final double evalLoss;
    public final double evalAccuracy;
    public final int evalCount;
    /** With adaptive DP clipping: whether |update| <= clip_norm; null when the plan does not ask. */
    public final Boolean belowClip;
    /** Example-level DP-SGD: this round's steps on the device's data; null without DP-SGD. */
    public final DpSgdEvent dpSgd;

    public UploadMeta(int exampleCount, double trainLoss, double evalLoss, double evalAccuracy, int evalCount,
                      Boolean belowClip) {
        this(exampleCount, trainLoss, evalLoss, evalAccuracy, evalCount, belowClip, null);
    }

    public UploadMeta(int exampleCount, double trainLoss, double evalLoss, double evalAccuracy, int evalCount,
                      Boolean belowClip, DpSgdEvent dpSgd) {
        if (exampleCount < 1) {
            throw new IllegalArgumentException("an update needs at least one example");
        }
        this.exampleCount = exampleCount;
        this.trainLoss = trainLoss;
        this.evalLoss = evalLoss;
        this.evalAccuracy = evalAccuracy;
        this.evalCount = evalCount;
        this.belowClip = belowClip;
        this.dpSgd = dpSgd;
    }

    public JsonObject toJson() {
        JsonObject out = new JsonObject();
        out.addProperty("example_count", exampleCount);
        out.addProperty("train_loss", trainLoss);
        out.addProperty("eval_loss", evalLoss);
        out.addProperty("eval_accuracy", evalAccuracy);
        out.addProperty("eval_count", evalCount);
        if (belowClip != null) {
            out.addProperty("below_clip", belowClip);
        }
        if (dpSgd != null) {
            out.add("dp_sgd", dpSgd.toJson());
        }
        return out;
    }
}
