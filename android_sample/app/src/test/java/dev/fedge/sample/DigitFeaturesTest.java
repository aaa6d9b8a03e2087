package dev.fedge.sample;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

import java.util.Arrays;
import java.util.Collections;
import org.junit.Test;

/** Strokes to the digits model's 8x8 input: known drawings give known intensities. */
public class DigitFeaturesTest {
    @Test
    public void aVerticalLineDownTheMiddleInksHalfOfTheTwoMiddleColumnsOfBlocks() {
        // x = 16 of 32 cells: the pen (radius 1.5) inks cells 14..17, two in each middle block.
        float[] f = DigitFeatures.fromStrokes(Collections.singletonList(new float[] {50f, 0f, 50f, 100f}), 100, 100);
        float[] expected = new float[64];
        for (int row = 0; row < 8; row++) {
            expected[row * 8 + 3] = 0.5f;
            expected[row * 8 + 4] = 0.5f;
        }
        assertArrayEquals(expected, f, 1e-6f);
    }

    @Test
    public void theDrawingScalesWithTheViewAndIntensitiesStayInZeroOne() {
        float[] small = DigitFeatures.fromStrokes(Collections.singletonList(new float[] {5f, 5f, 95f, 95f}), 100, 100);
        float[] large = DigitFeatures.fromStrokes(Collections.singletonList(new float[] {50f, 50f, 950f, 950f}), 1000,
                1000);
        assertArrayEquals(small, large, 1e-6f);
        for (float v : small) {
            assertEquals(true, v >= 0f && v <= 1f);
        }
        // The diagonal crosses the blocks on it, and the empty corners stay empty.
        assertEquals(true, small[0] > 0 && small[9] > 0 && small[63] > 0);
        assertEquals(0f, small[7], 0f);
        assertEquals(0f, small[56], 0f);
    }

    @Test
    public void nothingDrawnIsAllZeroAndADotInksOnlyItsBlock() {
        assertArrayEquals(new float[64], DigitFeatures.fromStrokes(Collections.emptyList(), 10, 10), 0f);
        float[] dot = DigitFeatures.fromStrokes(Arrays.asList(new float[] {2f, 2f}), 32, 32); // cell (2, 2)
        float inked = 0;
        for (float v : dot) {
            inked += v;
        }
        assertEquals(4f / 16f, dot[0], 1e-6f); // cells 1..2 x 1..2: their centres within 1.5 of (2, 2)
        assertEquals(dot[0], inked, 1e-6f);
    }
}
