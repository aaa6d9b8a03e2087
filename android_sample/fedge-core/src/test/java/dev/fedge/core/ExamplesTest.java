package dev.fedge.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.HashSet;
import java.util.Set;
import org.junit.Test;

public class ExamplesTest {
    private static File csv(String text) throws IOException {
        File file = Files.createTempFile("examples", ".csv").toFile();
        Files.write(file.toPath(), text.getBytes(StandardCharsets.UTF_8));
        return file;
    }

    @Test
    public void loadsFeaturesAndLabels() throws IOException {
        Examples e = Examples.loadCsv(csv("0.5,1.0,3\n\n0.25,0,7\n"));
        assertEquals(2, e.x.length);
        assertArrayEquals(new float[] {0.25f, 0f}, e.x[1], 0f);
        assertArrayEquals(new int[] {3, 7}, e.y);
    }

    @Test
    public void aBadLineIsReportedWithItsNumber() throws IOException {
        for (String text : new String[] {"1,2,3\n4\n", "1,2,3\n1,x,3\n", "1,2,3\n1,2,3.5\n"}) {
            try {
                Examples.loadCsv(csv(text));
                fail("accepted " + text);
            } catch (IOException expected) {
                assertTrue(expected.getMessage(), expected.getMessage().contains("line 2"));
            }
        }
    }

    @Test
    public void theHoldoutIsFixedDisjointAndCoversEveryRow() {
        float[][] x = new float[50][1];
        Examples e = new Examples(x, new int[50]);
        int[][] split = e.holdoutSplit(0.2, 0);
        assertEquals(40, split[0].length);
        assertEquals(10, split[1].length);
        Set<Integer> rows = new HashSet<>();
        for (int[] part : split) {
            for (int row : part) {
                assertTrue("row " + row + " twice", rows.add(row));
            }
        }
        assertEquals(50, rows.size());
        assertArrayEquals(split[1], e.holdoutSplit(0.2, 0)[1]);
    }
}
