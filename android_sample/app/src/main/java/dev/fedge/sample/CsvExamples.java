package dev.fedge.sample;

import java.io.BufferedReader;
import java.io.File;
import java.io.FileReader;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/**
 * The app's local examples: a CSV (features..., integer label per line) pushed with
 * `adb push examples.csv /sdcard/Android/data/dev.fedge.sample/files/`. Data never leaves
 * the phone; only weight deltas do.
 */
final class CsvExamples {
    final float[][] x;
    final int[] y;

    private CsvExamples(float[][] x, int[] y) {
        this.x = x;
        this.y = y;
    }

    static CsvExamples load(File file) throws IOException {
        List<float[]> xs = new ArrayList<>();
        List<Integer> ys = new ArrayList<>();
        try (BufferedReader in = new BufferedReader(new FileReader(file))) {
            String line;
            int number = 0;
            while ((line = in.readLine()) != null) {
                number++;
                if (line.trim().isEmpty()) {
                    continue;
                }
                String[] fields = line.split(",");
                if (fields.length < 2) {
                    throw new IOException(file + " line " + number + ": expected features and a label");
                }
                float[] row = new float[fields.length - 1];
                for (int i = 0; i < row.length; i++) {
                    row[i] = Float.parseFloat(fields[i].trim());
                }
                xs.add(row);
                ys.add(Integer.parseInt(fields[fields.length - 1].trim()));
            }
        }
        if (xs.isEmpty()) {
            throw new IOException(file + " has no examples");
        }
        int[] y = new int[ys.size()];
        for (int i = 0; i < y.length; i++) {
            y[i] = ys.get(i);
        }
        return new CsvExamples(xs.toArray(new float[0][]), y);
    }
}
