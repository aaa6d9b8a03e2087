package dev.fedge.core.secagg;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;

import java.math.BigInteger;
import org.junit.Test;

/** The long conversion used instead of BigInteger.longValueExact() (Android API 31). */
public class LongExactTest {
    @Test
    public void longsPassAndAnythingWiderIsRefused() {
        assertEquals(Long.MAX_VALUE, DistributedDp.toLongExact(BigInteger.valueOf(Long.MAX_VALUE)));
        assertEquals(Long.MIN_VALUE, DistributedDp.toLongExact(BigInteger.valueOf(Long.MIN_VALUE)));
        assertEquals(-5L, DistributedDp.toLongExact(BigInteger.valueOf(-5)));
        assertThrows(ArithmeticException.class,
                () -> DistributedDp.toLongExact(BigInteger.valueOf(Long.MAX_VALUE).add(BigInteger.ONE)));
        assertThrows(ArithmeticException.class,
                () -> DistributedDp.toLongExact(BigInteger.valueOf(Long.MIN_VALUE).subtract(BigInteger.ONE)));
    }
}
