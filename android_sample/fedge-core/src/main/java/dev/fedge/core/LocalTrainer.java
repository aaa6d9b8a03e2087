package dev.fedge.core;

/**
 * Local training of the round's model. On Android: LiteRT's interpreter running the
 * exported model's signatures (set_weights, evaluate, train, get_weights); on the JVM the
 * tests use a pure-Java trainer of the same weights.
 */
public interface LocalTrainer {
    /** Trained weights and what the device reports about the round. */
    final class Result {
        public final float[] weights;
        public final int exampleCount;
        public final double trainLoss;
        public final double evalLoss;
        public final double evalAccuracy;
        public final int evalCount;
        /** Optimizer steps taken (SCAFFOLD's K). */
        public final int steps;
        /** Example-level DP-SGD: the round's steps on the device's data; null without DP-SGD. */
        public final dev.fedge.core.dp.DpSgdEvent dpSgd;

        public Result(float[] weights, int exampleCount, double trainLoss, double evalLoss, double evalAccuracy,
                      int evalCount) {
            this(weights, exampleCount, trainLoss, evalLoss, evalAccuracy, evalCount, 0);
        }

        public Result(float[] weights, int exampleCount, double trainLoss, double evalLoss, double evalAccuracy,
                      int evalCount, int steps) {
            this(weights, exampleCount, trainLoss, evalLoss, evalAccuracy, evalCount, steps, null);
        }

        public Result(float[] weights, int exampleCount, double trainLoss, double evalLoss, double evalAccuracy,
                      int evalCount, int steps, dev.fedge.core.dp.DpSgdEvent dpSgd) {
            this.steps = steps;
            this.dpSgd = dpSgd;
            this.weights = weights;
            this.exampleCount = exampleCount;
            this.trainLoss = trainLoss;
            this.evalLoss = evalLoss;
            this.evalAccuracy = evalAccuracy;
            this.evalCount = evalCount;
        }
    }

    /**
     * Starts from the job's global weights, evaluates them on the local holdout, trains for the
     * plan's epochs (with SCAFFOLD's correction c - c_i added to every step's gradient when the
     * job carries one; a trainer without SCAFFOLD refuses it), returns the new weights.
     */
    Result train(TrainJob job) throws Exception;

    /** Counts of a federated evaluation (protocol.messages.EvaluationReport): correct <= examples. */
    final class Evaluation {
        public final int examples;
        public final double correct;
        public final double lossSum;
        /** After the plan's personalize_steps of fine-tuning; NaN without personalization. */
        public final double personalizedCorrect;
        public final double personalizedLossSum;

        public Evaluation(int examples, double correct, double lossSum) {
            this(examples, correct, lossSum, Double.NaN, Double.NaN);
        }

        public Evaluation(int examples, double correct, double lossSum, double personalizedCorrect,
                          double personalizedLossSum) {
            this.examples = examples;
            this.correct = Math.min(correct, examples);
            this.lossSum = Math.max(0.0, lossSum);
            this.personalizedCorrect = Double.isNaN(personalizedCorrect) ? Double.NaN
                    : Math.min(personalizedCorrect, examples);
            this.personalizedLossSum = Double.isNaN(personalizedLossSum) ? Double.NaN
                    : Math.max(0.0, personalizedLossSum);
        }

        public com.google.gson.JsonObject toJson() {
            com.google.gson.JsonObject o = new com.google.gson.JsonObject();
            o.addProperty("examples", examples);
            o.addProperty("correct", correct);
            o.addProperty("loss_sum", lossSum);
            if (!Double.isNaN(personalizedCorrect)) {
                o.addProperty("personalized_correct", personalizedCorrect);
                o.addProperty("personalized_loss_sum", personalizedLossSum);
            }
            return o;
        }
    }

    /**
     * Federated evaluation: {@code weights} (flat, manifest order) on the local holdout, as
     * counts; with {@code plan.personalizeSteps} > 0, again after that many fine-tuning steps
     * on the training split (nothing of the fine-tuning is kept).
     */
    Evaluation evaluate(byte[] model, String modelSha256, float[] weights, int[] counts, Plan plan) throws Exception;

    /** Expected seconds for this plan, from earlier rounds (0 when unknown), for the deadline check. */
    double estimateSeconds(Plan plan);
}
