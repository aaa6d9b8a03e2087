package dev.fedge.core.jvm;

import dev.fedge.core.Examples;
import dev.fedge.core.LocalTrainer;
import dev.fedge.core.LocalWork;
import dev.fedge.core.Plan;
import dev.fedge.core.TrainJob;
import dev.fedge.core.dp.DpSgdEvent;
import java.util.Random;

/**
 * A pure-Java trainer for a softmax-regression model (Keras Dense(k, softmax) on d
 * features: kernel d x k row-major, then bias k), used only on the JVM to stand in for
 * the LiteRT interpreter. Plain minibatch SGD on the mean cross-entropy, like the
 * exported model's train signature with an SGD optimizer.
 */
public final class SoftmaxRegressionTrainer implements LocalTrainer {
    private final Examples data;
    private final int[] trainRows;
    private final int[] evalRows;
    private final Random random;
    private double secondsPerExample;

    public SoftmaxRegressionTrainer(Examples data, double holdout, Random random) {
        this.data = data;
        int[][] split = data.holdoutSplit(holdout, 0);
        trainRows = split[0];
        evalRows = split[1];
        this.random = random;
    }

    /** Class probabilities of one example into {@code p}. */
    private static void softmax(float[] w, int d, int k, float[] x, double[] p) {
        double max = Double.NEGATIVE_INFINITY;
        for (int j = 0; j < k; j++) {
            double z = w[d * k + j];
            for (int i = 0; i < d; i++) {
                z += x[i] * w[i * k + j];
            }
            p[j] = z;
            max = Math.max(max, z);
        }
        double sum = 0;
        for (int j = 0; j < k; j++) {
            p[j] = Math.exp(p[j] - max);
            sum += p[j];
        }
        for (int j = 0; j < k; j++) {
            p[j] /= sum;
        }
    }

    @Override
    public Result train(TrainJob job) throws LocalWork.Unfinished {
        float[] globalWeights = job.globalWeights; // the model file is not read: the weights are the model
        int[] counts = job.counts;
        Plan plan = job.plan;
        float[] correction = job.correction;
        LocalWork.checkPlan(plan, true, "softmax regression");
        int steps = 0;
        if (counts.length != 2 || counts[0] % counts[1] != 0) {
            throw new IllegalArgumentException("not a softmax-regression model: tensor sizes " + java.util.Arrays.toString(counts));
        }
        long started = System.nanoTime();
        int k = counts[1];
        int d = counts[0] / k;
        double[] p = new double[k];
        double[] evaluated = holdout(globalWeights, d, k);
        double evalLoss = evaluated[1];
        double correct = evaluated[0];
        float[] w = globalWeights.clone();
        double[] grad = new double[w.length];
        double[] example = new double[w.length];
        int[] order = trainRows.clone();
        double lossSum = 0;
        int seen = 0;
        LocalWork work = new LocalWork(plan, started);
        int epochsDone = 0;
        for (int epoch = 0; epoch < plan.epochs; epoch++) {
            Examples.shuffle(order, random);
            boolean complete = true;
            for (int start = 0; start < order.length; start += plan.batchSize) {
                if (work.budgetSpent(System.nanoTime())) {
                    complete = false;
                    break;
                }
                int end = Math.min(order.length, start + plan.batchSize);
                java.util.Arrays.fill(grad, 0);
                for (int b = start; b < end; b++) {
                    float[] x = data.x[order[b]];
                    int label = data.y[order[b]];
                    softmax(w, d, k, x, p);
                    lossSum -= Math.log(Math.max(p[label], 1e-12));
                    seen++;
                    if (plan.dpSgd()) { // DP-SGD: this example's gradient, clipped, into the sum
                        java.util.Arrays.fill(example, 0);
                        addGradient(example, p, x, label, d, k);
                        double norm = 0;
                        for (double g : example) {
                            norm += g * g;
                        }
                        double clip = plan.dpSgdClip / Math.max(Math.sqrt(norm), plan.dpSgdClip);
                        for (int i = 0; i < grad.length; i++) {
                            grad[i] += example[i] * clip;
                        }
                    } else {
                        addGradient(grad, p, x, label, d, k);
                    }
                }
                // DP-SGD divides by the batch size (a constant, padded rows included), as train_dp does.
                double scale = plan.learningRate / (plan.dpSgd() ? plan.batchSize : end - start);
                if (plan.dpSgd()) {
                    for (int i = 0; i < grad.length; i++) {
                        grad[i] += plan.dpSgdNoiseMultiplier * plan.dpSgdClip * random.nextGaussian();
                    }
                }
                for (int i = 0; i < w.length; i++) {
                    // FedProx: + mu (w - w_anchor), the anchor being the round's global weights;
                    // SCAFFOLD: + (c - c_i).
                    double corrected = plan.proximalMu * (w[i] - globalWeights[i]) + (correction == null ? 0 : correction[i]);
                    w[i] -= (float) (scale * grad[i] + plan.learningRate * corrected);
                }
                work.processed(end - start);
                steps++;
            }
            if (!complete) {
                break;
            }
            epochsDone++;
        }
        secondsPerExample = (System.nanoTime() - started) / 1e9 / Math.max(1, plan.epochs * trainRows.length);
        DpSgdEvent spent = plan.dpSgd() && steps > 0
                ? DpSgdEvent.ofRound(plan.dpSgdNoiseMultiplier, plan.batchSize, trainRows.length, steps) : null;
        return new Result(w, work.exampleCount(trainRows.length, epochsDone), lossSum / Math.max(seen, 1),
                evalLoss / Math.max(evalRows.length, 1),
                correct / Math.max(evalRows.length, 1), evalRows.length, steps, spent);
    }

    /** Adds one example's cross-entropy gradient (probabilities {@code p}) to {@code grad}. */
    private static void addGradient(double[] grad, double[] p, float[] x, int label, int d, int k) {
        for (int j = 0; j < k; j++) {
            double err = p[j] - (j == label ? 1 : 0);
            grad[d * k + j] += err;
            for (int i = 0; i < d; i++) {
                grad[i * k + j] += err * x[i];
            }
        }
    }

    /** {correct, loss sum} of {@code w} on the holdout. */
    private double[] holdout(float[] w, int d, int k) {
        double[] p = new double[k];
        double lossSum = 0;
        int correct = 0;
        for (int row : evalRows) {
            softmax(w, d, k, data.x[row], p);
            lossSum -= Math.log(Math.max(p[data.y[row]], 1e-12));
            int best = 0;
            for (int j = 1; j < k; j++) {
                best = p[j] > p[best] ? j : best;
            }
            correct += best == data.y[row] ? 1 : 0;
        }
        return new double[] {correct, lossSum};
    }

    @Override
    public Evaluation evaluate(byte[] model, String modelSha256, float[] weights, int[] counts, Plan plan) {
        int k = counts[1];
        int d = counts[0] / k;
        double[] before = holdout(weights, d, k);
        if (plan.personalizeSteps <= 0 || trainRows.length == 0) {
            return new Evaluation(evalRows.length, before[0], before[1]);
        }
        // Personalized evaluation: plain SGD steps on batches of the training split, then the holdout again.
        float[] w = weights.clone();
        double[] grad = new double[w.length];
        double[] example = new double[w.length];
        double[] p = new double[k];
        int[] order = trainRows.clone();
        Examples.shuffle(order, random);
        int at = 0;
        for (int step = 0; step < plan.personalizeSteps; step++) {
            java.util.Arrays.fill(grad, 0);
            for (int b = 0; b < plan.batchSize; b++, at++) {
                int row = order[at % order.length];
                softmax(w, d, k, data.x[row], p);
                for (int j = 0; j < k; j++) {
                    double err = p[j] - (j == data.y[row] ? 1 : 0);
                    grad[d * k + j] += err;
                    for (int i = 0; i < d; i++) {
                        grad[i * k + j] += err * data.x[row][i];
                    }
                }
            }
            for (int i = 0; i < w.length; i++) {
                w[i] -= (float) (plan.learningRate / plan.batchSize * grad[i]);
            }
        }
        double[] after = holdout(w, d, k);
        return new Evaluation(evalRows.length, before[0], before[1], after[0], after[1]);
    }

    @Override
    public double estimateSeconds(Plan plan) {
        return secondsPerExample * plan.epochs * trainRows.length;
    }
}
