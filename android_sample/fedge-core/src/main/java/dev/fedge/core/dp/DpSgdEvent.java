package dev.fedge.core.dp;

import com.google.gson.JsonObject;
import java.util.Random;

/**
 * One round of example-level DP-SGD on this device (protocol.dp_sgd.DpSgdEvent): {@code steps}
 * steps of the file's train_dp at {@code noiseMultiplier}, each on a batch sampled at rate
 * {@code samplingRate} from the device's data. The upload reports it; the coordinator's
 * accountant (dp-accounting) turns it into the round's example-level epsilon, since this
 * core has no accountant of its own (protocol/golden/dp_sgd.json checks the event).
 */
public final class DpSgdEvent {
    public final double noiseMultiplier;
    public final double samplingRate;
    public final int steps;

    public DpSgdEvent(double noiseMultiplier, double samplingRate, int steps) {
        if (!(noiseMultiplier > 0) || !(samplingRate > 0 && samplingRate <= 1) || steps < 0) {
            throw new IllegalArgumentException("a DP-SGD event has noise multiplier > 0, sampling rate in (0, 1] "
                    + "and steps >= 0");
        }
        this.noiseMultiplier = noiseMultiplier;
        this.samplingRate = samplingRate;
        this.steps = steps;
    }

    /** q: the chance that one example is in one batch (protocol.dp_sgd.sampling_rate). */
    public static double samplingRate(int batchSize, int examples) {
        if (batchSize < 1 || examples < 1) {
            throw new IllegalArgumentException("batch size and examples must be >= 1");
        }
        return Math.min(1.0, batchSize / (double) examples);
    }

    /** What a device reports after {@code steps} train_dp steps over {@code examples} local examples. */
    public static DpSgdEvent ofRound(double noiseMultiplier, int batchSize, int examples, int steps) {
        return new DpSgdEvent(noiseMultiplier, samplingRate(batchSize, examples), steps);
    }

    /**
     * train_dp's noise input: one standard normal per trainable coordinate. On a device the
     * generator is a SecureRandom: noise anyone could replay would protect nothing.
     */
    public static void standardNormal(float[] out, Random random) {
        for (int i = 0; i < out.length; i++) {
            out[i] = (float) random.nextGaussian();
        }
    }

    public JsonObject toJson() {
        JsonObject o = new JsonObject();
        o.addProperty("noise_multiplier", noiseMultiplier);
        o.addProperty("sampling_rate", samplingRate);
        o.addProperty("steps", steps);
        return o;
    }
}
