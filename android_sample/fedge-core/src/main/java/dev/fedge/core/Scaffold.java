package dev.fedge.core;

/**
 * SCAFFOLD's device-side rule (protocol/scaffold.py; Karimireddy et al. 2020, option II), in
 * float32 in the same order as the Python side, checked against protocol/golden/scaffold.json.
 */
public final class Scaffold {
    private Scaffold() {
    }

    /** c_i+ = c_i - c + (x - y) / (K lr), from the model delta {@code delta} = y - x; c_i when K lr is 0. */
    public static float[] nextControl(float[] c, float[] ci, float[] delta, int steps, double learningRate) {
        return nextControl(c, ci, delta, steps, learningRate, 0.0, false);
    }

    /** The same with K counted as the plain-SGD steps momentum SGD's steps make ({@link #effectiveSteps}). */
    public static float[] nextControl(float[] c, float[] ci, float[] delta, int steps, double learningRate,
                                      double momentum, boolean nesterov) {
        float scale = (float) effectiveSteps(steps, momentum, nesterov) * (float) learningRate;
        float[] out = new float[ci.length];
        for (int k = 0; k < out.length; k++) {
            out[k] = scale > 0 ? (ci[k] - c[k]) - delta[k] / scale : ci[k];
        }
        return out;
    }

    /**
     * How many plain-SGD steps {@code steps} steps of heavy-ball momentum move a weight under a
     * constant gradient from zero velocity (protocol/scaffold.py effective_steps: the same loop
     * of double operations, so the same value to the bit).
     */
    public static double effectiveSteps(int steps, double momentum, boolean nesterov) {
        if (momentum == 0.0) {
            return Math.max(steps, 0);
        }
        double velocity = 0.0;
        double total = 0.0;
        for (int k = 0; k < steps; k++) {
            velocity = momentum * velocity + 1.0;
            total += nesterov ? momentum * velocity + 1.0 : velocity;
        }
        return total;
    }

    /** What a SCAFFOLD device uploads: the model delta, then c_i+ - c_i. */
    public static float[] updateVector(float[] delta, float[] ci, float[] next) {
        float[] out = new float[delta.length + ci.length];
        System.arraycopy(delta, 0, out, 0, delta.length);
        for (int k = 0; k < ci.length; k++) {
            out[delta.length + k] = next[k] - ci[k];
        }
        return out;
    }

    /** The correction the train step adds to each gradient: c - c_i. */
    public static float[] correction(float[] c, float[] ci) {
        float[] out = new float[c.length];
        for (int k = 0; k < c.length; k++) {
            out[k] = c[k] - ci[k];
        }
        return out;
    }

    /**
     * The c_i kept once the upload is acknowledged: c_i plus the control delta as the coordinator
     * decodes it ({@code sent}, control delta last), rounding error included, so that c stays the
     * mean of the c_i under a quantizing codec (protocol/scaffold.py after_sent).
     */
    public static float[] afterSent(float[] ci, float[] sent) {
        float[] out = new float[ci.length];
        int tail = sent.length - ci.length;
        for (int k = 0; k < ci.length; k++) {
            out[k] = ci[k] + sent[tail + k];
        }
        return out;
    }
}
