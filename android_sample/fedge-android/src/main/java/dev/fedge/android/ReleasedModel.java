package dev.fedge.android;

import dev.fedge.core.Release;
import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.util.HashMap;
import java.util.Map;
import org.tensorflow.lite.Interpreter;

/**
 * The model release this phone installed, opened for inference (its `infer` signature):
 * what the app predicts with. Opened from the file `Fedge.model()` names, whose digest the
 * library checked against the coordinator's signed release before installing it.
 */
public final class ReleasedModel implements AutoCloseable {
    public final Release release;
    private final Interpreter interpreter;
    private final int batch;
    private final int features;

    private ReleasedModel(Release release, File file) throws IOException {
        this.release = release;
        interpreter = LiteRtTrainer.open(Files.readAllBytes(file.toPath()));
        int[] shape = interpreter.getInputTensorFromSignature("x", "infer").shape();
        batch = Math.max(1, shape[0]);
        features = shape[shape.length - 1];
    }

    /** The installed release, opened; null when none is installed yet. */
    public static ReleasedModel open(android.content.Context context) throws IOException {
        Release release = Fedge.release(context);
        File file = Fedge.model(context);
        return release == null || file == null || !file.exists() ? null : new ReleasedModel(release, file);
    }

    /** The model's outputs for one example of {@code features} values. */
    public float[] infer(float[] example) {
        if (example.length != features) {
            throw new IllegalArgumentException("the model takes " + features + " features, not " + example.length);
        }
        float[][] x = new float[batch][features];
        x[0] = example.clone(); // the signature's batch is fixed: the other rows are padding
        Map<String, Object> inputs = new HashMap<>();
        inputs.put("x", x);
        int classes = interpreter.getOutputTensorFromSignature("output", "infer").shape()[1];
        float[][] out = new float[batch][classes];
        Map<String, Object> outputs = new HashMap<>();
        outputs.put("output", out);
        interpreter.runSignature(inputs, outputs, "infer");
        return out[0];
    }

    /** The class with the largest output. */
    public int classify(float[] example) {
        float[] out = infer(example);
        int best = 0;
        for (int i = 1; i < out.length; i++) {
            if (out[i] > out[best]) {
                best = i;
            }
        }
        return best;
    }

    @Override
    public void close() {
        interpreter.close();
    }
}
