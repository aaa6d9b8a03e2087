package dev.fedge.sample;

import java.util.List;

/**
 * A finger drawing as the exported digits model's input: 8x8 intensities in [0, 1], the way
 * scikit-learn's handwritten digits were made (a 32x32 bitmap, each 4x4 block's ink counted,
 * 0..16) and scaled as fedge's digits data are (divided by 16).
 */
final class DigitFeatures {
    static final int GRID = 32;
    static final int BLOCKS = 8;
    static final double PEN_RADIUS = 1.5; // in grid cells: a finger's stroke on a phone
    private static final double STEP = 0.25;

    private DigitFeatures() {
    }

    /**
     * @param strokes each stroke's points as {x0, y0, x1, y1, ...} in view coordinates
     * @param width the view's width, {@code height} its height (the drawing is scaled to the grid)
     */
    static float[] fromStrokes(List<float[]> strokes, float width, float height) {
        if (width <= 0 || height <= 0) {
            throw new IllegalArgumentException("the drawing area must have a size");
        }
        boolean[][] ink = new boolean[GRID][GRID];
        for (float[] stroke : strokes) {
            int points = stroke.length / 2;
            for (int p = 0; p < points; p++) {
                double x0 = stroke[2 * p] / width * GRID;
                double y0 = stroke[2 * p + 1] / height * GRID;
                double x1 = p + 1 < points ? stroke[2 * p + 2] / width * GRID : x0;
                double y1 = p + 1 < points ? stroke[2 * p + 3] / height * GRID : y0;
                int samples = Math.max(1, (int) Math.ceil(Math.hypot(x1 - x0, y1 - y0) / STEP));
                for (int s = 0; s <= samples; s++) {
                    double t = s / (double) samples;
                    stamp(ink, x0 + t * (x1 - x0), y0 + t * (y1 - y0));
                }
            }
        }
        float[] features = new float[BLOCKS * BLOCKS];
        int block = GRID / BLOCKS;
        for (int row = 0; row < GRID; row++) {
            for (int col = 0; col < GRID; col++) {
                if (ink[row][col]) {
                    features[(row / block) * BLOCKS + col / block] += 1f / (block * block);
                }
            }
        }
        return features;
    }

    /** Inks every cell whose centre is within the pen's radius of (x, y). */
    private static void stamp(boolean[][] ink, double x, double y) {
        for (int row = Math.max(0, (int) Math.floor(y - PEN_RADIUS - 1)); row < Math.min(GRID, y + PEN_RADIUS + 1); row++) {
            for (int col = Math.max(0, (int) Math.floor(x - PEN_RADIUS - 1)); col < Math.min(GRID, x + PEN_RADIUS + 1);
                    col++) {
                if (Math.hypot(col + 0.5 - x, row + 0.5 - y) <= PEN_RADIUS + 1e-9) {
                    ink[row][col] = true;
                }
            }
        }
    }
}
