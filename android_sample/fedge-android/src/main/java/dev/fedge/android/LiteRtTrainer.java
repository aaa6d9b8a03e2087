package dev.fedge.android;

import dev.fedge.core.Examples;
import dev.fedge.core.LocalState;
import dev.fedge.core.LocalTrainer;
import dev.fedge.core.LocalWork;
import dev.fedge.core.Plan;
import dev.fedge.core.TrainJob;
import dev.fedge.core.dp.DpSgdEvent;
import java.nio.Buffer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.HashMap;
import java.util.Map;
import java.util.Random;
import org.tensorflow.lite.Interpreter;
import org.tensorflow.lite.TensorFlowLite;

/**
 * Local training through the exported model's signatures on LiteRT's interpreter:
 * set_weights (global model; resets optimizer slots), evaluate on the holdout, train for
 * the plan's epochs in fixed-size batches (padding rows get sample_weight 0, as in the
 * Python runtime), get_weights. Batch size, feature count and weight sizes are read from
 * the signatures, so any fedge export with float32 features and int32 labels works.
 */
final class LiteRtTrainer implements LocalTrainer {
    static final String UNAVAILABLE = "unavailable";

    private final Examples data;
    private final int[] trainRows;
    private final int[] evalRows;
    private final Random random;
    /** DP-SGD's noise: the OS's CSPRNG, never a seeded generator (replayable noise protects nothing). */
    private final java.security.SecureRandom noiseSource = new java.security.SecureRandom();
    private final LocalState state;
    private double secondsPerStep;

    LiteRtTrainer(Examples data, double holdout, Random random, LocalState state) {
        this.data = data;
        int[][] split = data.holdoutSplit(holdout, 0);
        trainRows = split[0];
        evalRows = split[1];
        this.random = random;
        this.state = state;
    }

    /** Personal layers (fedge export --personal): this device's own values, loaded into the interpreter. */
    private void loadPersonal(Interpreter interpreter, String modelSha256) {
        String[] keys = personalKeys(interpreter);
        if (keys.length == 0) {
            return;
        }
        float[] saved;
        try {
            saved = state.load("personal-" + modelSha256.substring(0, 32));
        } catch (java.io.IOException e) {
            saved = null; // unreadable: start from the file's own values, as a new device does
        }
        if (saved == null) {
            return;
        }
        Map<String, Object> inputs = new HashMap<>();
        int at = 0;
        for (String key : keys) {
            int n = interpreter.getInputTensorFromSignature(key, "set_personal").numElements();
            ByteBuffer b = buffer(4 * n);
            for (int i = 0; i < n && at < saved.length; i++) {
                b.putFloat(saved[at++]);
            }
            inputs.put(key, rewound(b));
        }
        Map<String, Object> outputs = new HashMap<>();
        outputs.put("ok", buffer(4));
        interpreter.runSignature(inputs, outputs, "set_personal");
    }

    /** After training: the personal layers as trained here, kept for the next round (never uploaded). */
    private void keepPersonal(Interpreter interpreter, String modelSha256) throws java.io.IOException {
        String[] keys = personalKeys(interpreter);
        if (keys.length == 0) {
            return;
        }
        Map<String, Object> outputs = new HashMap<>();
        int total = 0;
        for (String key : keys) {
            int n = interpreter.getOutputTensorFromSignature(key, "get_personal").numElements();
            outputs.put(key, buffer(4 * n));
            total += n;
        }
        interpreter.runSignature(new HashMap<>(), outputs, "get_personal");
        float[] flat = new float[total];
        int at = 0;
        for (String key : keys) {
            ByteBuffer b = (ByteBuffer) outputs.get(key);
            rewound(b);
            while (b.remaining() >= 4) {
                flat[at++] = b.getFloat();
            }
        }
        state.save("personal-" + modelSha256.substring(0, 32), flat);
    }

    private static String[] personalKeys(Interpreter interpreter) {
        if (!java.util.Arrays.asList(interpreter.getSignatureKeys()).contains("get_personal")) {
            return new String[0];
        }
        String[] keys = interpreter.getSignatureOutputs("get_personal");
        java.util.Arrays.sort(keys); // p000, p001, ... in manifest order
        return keys;
    }

    /**
     * LiteRT's version, or "unavailable" where its native library does not load: the check-in
     * then says so (a task's runtime_version rule turns the device away) instead of the app
     * failing at every check-in.
     */
    static String runtimeVersion() {
        try {
            return TensorFlowLite.runtimeVersion();
        } catch (LinkageError | IllegalStateException e) {
            return UNAVAILABLE;
        }
    }

    /** A LiteRT interpreter on a model's bytes (training here, inference in ReleasedModel). */
    static Interpreter open(byte[] model) {
        ByteBuffer modelBuffer = buffer(model.length);
        rewound(modelBuffer.put(model));
        return new Interpreter(modelBuffer, new Interpreter.Options().setNumThreads(2));
    }

    /** set_weights' inputs w000, w001, ... in manifest (update) order; as many as the checkpoint's tensors. */
    private static String[] weightKeys(Interpreter interpreter, int[] counts) {
        String[] keys = interpreter.getSignatureInputs("set_weights");
        java.util.Arrays.sort(keys);
        if (keys.length != counts.length) {
            throw new IllegalStateException("checkpoint has " + counts.length + " tensors, model " + keys.length);
        }
        return keys;
    }

    private static ByteBuffer buffer(int bytes) {
        return ByteBuffer.allocateDirect(bytes).order(ByteOrder.nativeOrder());
    }

    @Override
    public Result train(TrainJob job) throws LocalWork.Unfinished {
        byte[] model = job.model;
        String modelSha256 = job.modelSha256;
        float[] globalWeights = job.globalWeights;
        int[] counts = job.counts;
        Plan plan = job.plan;
        float[] correction = job.correction;
        try (Interpreter interpreter = open(model)) {
            int batch = interpreter.getInputTensorFromSignature("x", "train").shape()[0];
            int features = interpreter.getInputTensorFromSignature("x", "train").numElements() / batch;
            String[] weightKeys = weightKeys(interpreter, counts);
            // FedProx needs a file whose train step takes proximal_mu; older exports refuse such a task.
            boolean takesMu = java.util.Arrays.asList(interpreter.getSignatureInputs("train")).contains("proximal_mu");
            LocalWork.checkPlan(plan, takesMu, modelSha256);
            setWeights(interpreter, weightKeys, globalWeights, counts); // also the proximal anchor
            loadPersonal(interpreter, modelSha256); // set_weights leaves personal layers alone
            if (correction != null) {
                setControl(interpreter, correction, counts); // SCAFFOLD: c - c_i, zeroed by set_weights
            }
            // train_dp with example-level DP-SGD; else train (files exported with the older
            // second step: train_plain when neither FedProx's nor SCAFFOLD's term is on).
            LocalWork.checkDpSgd(plan, interpreter.getSignatureKeys(), modelSha256);
            String step = LocalWork.trainSignature(interpreter.getSignatureKeys(), plan.proximalMu, correction != null,
                    plan.dpSgd());
            float[] noise = plan.dpSgd()
                    ? new float[interpreter.getInputTensorFromSignature("noise", step).numElements()] : null;
            ByteBuffer noiseBuffer = noise == null ? null : buffer(4 * noise.length);
            ByteBuffer clip = buffer(4);
            rewound(clip.putFloat((float) plan.dpSgdClip));
            ByteBuffer noiseMultiplier = buffer(4);
            rewound(noiseMultiplier.putFloat((float) plan.dpSgdNoiseMultiplier));
            boolean stepTakesMu = java.util.Arrays.asList(interpreter.getSignatureInputs(step)).contains("proximal_mu");

            int[] rowsThisRound = trainRows.clone();
            Examples.shuffle(rowsThisRound, random);
            if (plan.maxExamples > 0 && rowsThisRound.length > plan.maxExamples) {
                rowsThisRound = java.util.Arrays.copyOf(rowsThisRound, plan.maxExamples);
            }
            double[] eval = evaluate(interpreter, evalRows, batch, features);

            ByteBuffer learningRate = buffer(4);
            rewound(learningRate.putFloat((float) plan.learningRate));
            ByteBuffer proximalMu = buffer(4);
            rewound(proximalMu.putFloat((float) plan.proximalMu));
            double lossSum = 0;
            int seen = 0;
            int steps = 0;
            long started = System.nanoTime();
            LocalWork work = new LocalWork(plan, started);
            int epochsDone = 0;
            for (int epoch = 0; epoch < plan.epochs; epoch++) {
                int[] rows = rowsThisRound.clone();
                Examples.shuffle(rows, random);
                boolean complete = true;
                for (int start = 0; start < rows.length; start += batch) {
                    if (work.budgetSpent(System.nanoTime())) {
                        complete = false;
                        break;
                    }
                    int real = Math.min(batch, rows.length - start);
                    Map<String, Object> inputs = batchInputs(rows, start, real, batch, features);
                    rewound(learningRate);
                    inputs.put("learning_rate", learningRate);
                    if (stepTakesMu) {
                        rewound(proximalMu);
                        inputs.put("proximal_mu", proximalMu);
                    }
                    if (noise != null) { // fresh standard normal noise for every DP-SGD step
                        DpSgdEvent.standardNormal(noise, noiseSource);
                        rewound(noiseBuffer);
                        noiseBuffer.asFloatBuffer().put(noise);
                        inputs.put("noise", rewound(noiseBuffer));
                        inputs.put("l2_norm_clip", rewound(clip));
                        inputs.put("noise_multiplier", rewound(noiseMultiplier));
                    }
                    ByteBuffer loss = buffer(4);
                    Map<String, Object> outputs = new HashMap<>();
                    outputs.put("loss", loss);
                    interpreter.runSignature(inputs, outputs, step);
                    lossSum += loss.getFloat(0) * real;
                    seen += real;
                    steps++;
                    work.processed(real);
                }
                if (!complete) {
                    break;
                }
                epochsDone++;
            }
            secondsPerStep = steps > 0 ? (System.nanoTime() - started) / 1e9 / steps : secondsPerStep;
            try {
                keepPersonal(interpreter, modelSha256);
            } catch (java.io.IOException e) {
                throw new IllegalStateException("cannot keep the personal layers: " + e, e);
            }
            float[] trained = getWeights(interpreter, weightKeys, counts);
            DpSgdEvent spent = plan.dpSgd() && steps > 0
                    ? DpSgdEvent.ofRound(plan.dpSgdNoiseMultiplier, batch, rowsThisRound.length, steps) : null;
            return new Result(trained, work.exampleCount(rowsThisRound.length, epochsDone), lossSum / Math.max(seen, 1),
                    eval[0], eval[1], evalRows.length, steps, spent);
        }
    }

    /** SCAFFOLD's correction for the trainable weights the set_control signature takes (cNNN for wNNN). */
    private static void setControl(Interpreter interpreter, float[] correction, int[] counts) {
        String[] keys = interpreter.getSignatureInputs("set_control");
        int[] offsets = new int[counts.length];
        for (int i = 1; i < counts.length; i++) {
            offsets[i] = offsets[i - 1] + counts[i - 1];
        }
        Map<String, Object> inputs = new HashMap<>();
        for (String key : keys) {
            int index = Integer.parseInt(key.substring(1));
            ByteBuffer b = buffer(4 * counts[index]);
            for (int k = 0; k < counts[index]; k++) {
                b.putFloat(correction[offsets[index] + k]);
            }
            inputs.put(key, rewound(b));
        }
        Map<String, Object> outputs = new HashMap<>();
        outputs.put("ok", buffer(4));
        interpreter.runSignature(inputs, outputs, "set_control");
    }

    @Override
    public Evaluation evaluate(byte[] model, String modelSha256, float[] weights, int[] counts, Plan plan) {
        try (Interpreter interpreter = open(model)) {
            int batch = interpreter.getInputTensorFromSignature("x", "evaluate").shape()[0];
            int features = interpreter.getInputTensorFromSignature("x", "evaluate").numElements() / batch;
            String[] weightKeys = weightKeys(interpreter, counts);
            setWeights(interpreter, weightKeys, weights, counts);
            loadPersonal(interpreter, modelSha256); // evaluate with this device's personal layers
            double[] meanLossAndAccuracy = evaluate(interpreter, evalRows, batch, features);
            int n = evalRows.length;
            if (plan.personalizeSteps <= 0 || trainRows.length == 0) {
                return new Evaluation(n, meanLossAndAccuracy[1] * n, meanLossAndAccuracy[0] * n);
            }
            // Personalized evaluation: train-signature steps on the training split, then the holdout again.
            int[] rows = trainRows.clone();
            Examples.shuffle(rows, random);
            int[] cycled = new int[plan.personalizeSteps * batch];
            for (int i = 0; i < cycled.length; i++) {
                cycled[i] = rows[i % rows.length];
            }
            ByteBuffer learningRate = buffer(4);
            rewound(learningRate.putFloat((float) plan.learningRate));
            String step = LocalWork.trainSignature(interpreter.getSignatureKeys(), 0, false);
            boolean takesMu = java.util.Arrays.asList(interpreter.getSignatureInputs(step)).contains("proximal_mu");
            for (int start = 0; start < cycled.length; start += batch) {
                Map<String, Object> inputs = batchInputs(cycled, start, batch, batch, features);
                rewound(learningRate);
                inputs.put("learning_rate", learningRate);
                if (takesMu) {
                    ByteBuffer zero = buffer(4);
                    rewound(zero.putFloat(0f));
                    inputs.put("proximal_mu", zero);
                }
                Map<String, Object> outputs = new HashMap<>();
                outputs.put("loss", buffer(4));
                interpreter.runSignature(inputs, outputs, step);
            }
            double[] tuned = evaluate(interpreter, evalRows, batch, features);
            return new Evaluation(n, meanLossAndAccuracy[1] * n, meanLossAndAccuracy[0] * n, tuned[1] * n, tuned[0] * n);
        }
    }

    @Override
    public double estimateSeconds(Plan plan) {
        return secondsPerStep * plan.epochs * Math.ceil(trainRows.length / (double) plan.batchSize);
    }

    private Map<String, Object> batchInputs(int[] rows, int start, int real, int batch, int features) {
        ByteBuffer x = buffer(4 * batch * features);
        ByteBuffer y = buffer(4 * batch);
        ByteBuffer weight = buffer(4 * batch);
        for (int b = 0; b < batch; b++) {
            boolean padding = b >= real;
            int row = rows[start + (padding ? 0 : b)];
            for (int i = 0; i < features; i++) {
                x.putFloat(data.x[row][i]);
            }
            y.putInt(data.y[row]);
            weight.putFloat(padding ? 0f : 1f);
        }
        Map<String, Object> inputs = new HashMap<>();
        inputs.put("x", rewound(x));
        inputs.put("y", rewound(y));
        inputs.put("sample_weight", rewound(weight));
        return inputs;
    }

    /** {mean loss, accuracy} of the current weights on {@code rows}. */
    private double[] evaluate(Interpreter interpreter, int[] rows, int batch, int features) {
        double lossSum = 0;
        double correct = 0;
        for (int start = 0; start < rows.length; start += batch) {
            int real = Math.min(batch, rows.length - start);
            ByteBuffer loss = buffer(4);
            ByteBuffer hits = buffer(4);
            Map<String, Object> outputs = new HashMap<>();
            outputs.put("loss_sum", loss);
            outputs.put("correct", hits);
            interpreter.runSignature(batchInputs(rows, start, real, batch, features), outputs, "evaluate");
            lossSum += loss.getFloat(0);
            correct += hits.getFloat(0);
        }
        int n = Math.max(rows.length, 1);
        return new double[] {lossSum / n, correct / n};
    }

    private static void setWeights(Interpreter interpreter, String[] keys, float[] flat, int[] counts) {
        Map<String, Object> inputs = new HashMap<>();
        int position = 0;
        for (int t = 0; t < keys.length; t++) {
            ByteBuffer tensor = buffer(4 * counts[t]);
            for (int i = 0; i < counts[t]; i++) {
                tensor.putFloat(flat[position++]);
            }
            inputs.put(keys[t], rewound(tensor));
        }
        Map<String, Object> outputs = new HashMap<>();
        outputs.put("ok", buffer(4));
        interpreter.runSignature(inputs, outputs, "set_weights");
    }

    private static float[] getWeights(Interpreter interpreter, String[] keys, int[] counts) {
        Map<String, Object> outputs = new HashMap<>();
        for (int t = 0; t < keys.length; t++) {
            outputs.put(keys[t], buffer(4 * counts[t]));
        }
        interpreter.runSignature(new HashMap<>(), outputs, "get_weights");
        int total = 0;
        for (int c : counts) {
            total += c;
        }
        float[] flat = new float[total];
        int position = 0;
        for (int t = 0; t < keys.length; t++) {
            ByteBuffer tensor = (ByteBuffer) outputs.get(keys[t]);
            rewound(tensor);
            for (int i = 0; i < counts[t]; i++) {
                flat[position++] = tensor.getFloat();
            }
        }
        return flat;
    }

    /** b, rewound: through Buffer, since ByteBuffer.rewind() returning ByteBuffer is Java 9's, not Android 8's (minSdk 26). */
    private static ByteBuffer rewound(ByteBuffer b) {
        ((Buffer) b).rewind();
        return b;
    }
}
