package dev.fedge.core;

import java.io.BufferedReader;
import java.io.File;
import java.io.FileReader;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

/**
 * A device's local examples: float features and an integer label per row. On disk a CSV,
 * one example per line, the features then the label. Data never leaves the device; only
 * weight deltas do.
 */
public final class Examples {
    public final float[][] x;
    public final int[] y;

    public Examples(float[][] x, int[] y) {
        if (x.length != y.length || x.length == 0) {
            throw new IllegalArgumentException("need as many labels as examples, and at least one");
        }
        this.x = x;
        this.y = y;
    }

    public static Examples loadCsv(File file) throws IOException {
        try (BufferedReader in = new BufferedReader(new FileReader(file))) {
            return readCsv(in, file.toString());
        }
    }

    /** The same format from any reader (an app's bundled asset); {@code source} names it in errors. */
    public static Examples readCsv(BufferedReader in, String source) throws IOException {
        List<float[]> xs = new ArrayList<>();
        List<Integer> ys = new ArrayList<>();
        String line;
        int number = 0;
        while ((line = in.readLine()) != null) {
            number++;
            if (line.trim().isEmpty()) {
                continue;
            }
            String[] fields = line.split(",");
            if (fields.length < 2) {
                throw new IOException(source + " line " + number + ": expected features and a label");
            }
            float[] row = new float[fields.length - 1];
            try {
                for (int i = 0; i < row.length; i++) {
                    row[i] = Float.parseFloat(fields[i].trim());
                }
                ys.add(Integer.parseInt(fields[fields.length - 1].trim()));
            } catch (NumberFormatException e) {
                throw new IOException(source + " line " + number + ": " + e.getMessage(), e);
            }
            xs.add(row);
        }
        if (xs.isEmpty()) {
            throw new IOException(source + " has no examples");
        }
        int[] y = new int[ys.size()];
        for (int i = 0; i < y.length; i++) {
            y[i] = ys.get(i);
        }
        return new Examples(xs.toArray(new float[0][]), y);
    }

    /**
     * Row indices {train, holdout}, the holdout a {@code fraction} of the rows. The split is
     * fixed by {@code seed}, so the holdout is the same rows every round and the local
     * accuracy reported with each update is comparable across rounds.
     */
    public int[][] holdoutSplit(double fraction, long seed) {
        int[] order = new int[x.length];
        for (int i = 0; i < order.length; i++) {
            order[i] = i;
        }
        shuffle(order, new Random(seed));
        int holdout = (int) Math.round(order.length * fraction);
        return new int[][] {Arrays.copyOfRange(order, holdout, order.length), Arrays.copyOfRange(order, 0, holdout)};
    }

    /** Fisher-Yates shuffle in place. */
    public static void shuffle(int[] values, Random random) {
        for (int i = values.length - 1; i > 0; i--) {
            int j = random.nextInt(i + 1);
            int t = values[i];
            values[i] = values[j];
            values[j] = t;
        }
    }
}
