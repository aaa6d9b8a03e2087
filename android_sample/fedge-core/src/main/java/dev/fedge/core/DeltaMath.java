package dev.fedge.core;

/** The update a device sends: new weights minus the global ones, optionally L2-clipped. */
public final class DeltaMath {
    private DeltaMath() {
    }

    public static float[] delta(float[] trained, float[] global) {
        if (trained.length != global.length) {
            throw new IllegalArgumentException("weights have " + trained.length + " values, the model " + global.length);
        }
        float[] out = new float[trained.length];
        for (int i = 0; i < out.length; i++) {
            out[i] = trained[i] - global[i];
        }
        return out;
    }

    public static double l2Norm(float[] values) {
        double sum = 0;
        for (float v : values) {
            sum += (double) v * v;
        }
        return Math.sqrt(sum);
    }

    /** Scales {@code delta} in place to L2 norm at most {@code clipNorm} (0 disables); returns the norm before. */
    public static double clipL2(float[] delta, double clipNorm) {
        double norm = l2Norm(delta);
        if (clipNorm > 0 && norm > clipNorm) {
            float scale = (float) (clipNorm / norm);
            for (int i = 0; i < delta.length; i++) {
                delta[i] *= scale;
            }
        }
        return norm;
    }
}
