package dev.fedge.core.dp;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.math.BigInteger;
import java.util.Random;
import org.junit.Test;

/** The exact integer square root used instead of BigInteger.sqrt() (Android API 33). */
public class IntegerSqrtTest {
    private static void assertFloorSqrt(BigInteger n) {
        BigInteger r = DiscreteGaussian.isqrt(n);
        assertTrue(n + ": " + r + "^2 > n", r.multiply(r).compareTo(n) <= 0);
        BigInteger next = r.add(BigInteger.ONE);
        assertTrue(n + ": (" + r + "+1)^2 <= n", next.multiply(next).compareTo(n) > 0);
    }

    @Test
    public void smallNumbersExhaustively() {
        for (long n = 0; n < 100_000; n++) {
            assertFloorSqrt(BigInteger.valueOf(n));
        }
    }

    @Test
    public void squaresAndTheirNeighboursUpTo4096Bits() {
        Random random = new Random(7);
        for (int bits = 2; bits <= 4096; bits += 37) {
            BigInteger root = new BigInteger(bits, random).setBit(bits - 1);
            BigInteger square = root.multiply(root);
            assertEquals(root, DiscreteGaussian.isqrt(square));
            assertEquals(root.subtract(BigInteger.ONE), DiscreteGaussian.isqrt(square.subtract(BigInteger.ONE)));
            assertEquals(root, DiscreteGaussian.isqrt(square.add(root.shiftLeft(1))));
            assertFloorSqrt(new BigInteger(bits, random));
        }
    }

    @Test
    public void negativeIsRefused() {
        assertThrows(ArithmeticException.class, () -> DiscreteGaussian.isqrt(BigInteger.valueOf(-1)));
    }
}
