package dev.fedge.core.secagg;

import dev.fedge.core.ProtocolException;
import dev.fedge.core.Rotation;
import dev.fedge.core.dp.DiscreteGaussian;
import dev.fedge.core.secagg.SecAggMessages.Params;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.security.SecureRandom;
import java.util.function.DoubleSupplier;
import java.util.function.LongSupplier;

/**
 * Distributed DP under SecAgg (protocol/secagg/distributed_dp.py; Kairouz, Liu and Steinke
 * 2021): the device rotates its clipped delta onto the round's grid, rounds each coordinate
 * stochastically until the rounded vector's L2 norm is within the round's bound (conditional
 * rounding), adds exact discrete Gaussian noise of the round's variance and reduces mod 2^k.
 * Fed the same draws, it returns the same codes as the Python device (golden "distributed").
 */
public final class DistributedDp {
    static final int MAX_ROUNDING_TRIES = 1000;

    private DistributedDp() {
    }

    /** The round's noise: N_Z(0, dp_variance) draws from {@code random}, exact. */
    public static LongSupplier osNoise(Params p, SecureRandom random) {
        BigInteger variance = new BigDecimal(p.dpVariance).toBigIntegerExact(); // an integer (checked in Params)
        DiscreteGaussian.Uniform uniform = DiscreteGaussian.secure(random);
        return () -> DiscreteGaussian.sample(variance, BigInteger.ONE, uniform).longValueExact();
    }

    /** Codes mod 2^modulus_bits, length L, one rounding draw per code per attempt. */
    public static long[] encode(float[] flat, Params p, DoubleSupplier uniforms, LongSupplier noise) {
        int length = Ring.paddedLength(flat.length);
        float[] padded = new float[length];
        float[] signs = Rotation.signs(p.rotationSeed, length);
        for (int i = 0; i < flat.length; i++) {
            padded[i] = flat[i] * signs[i];
        }
        float[] rotated = Rotation.hadamardChunks(padded, length);
        float bound = (float) p.valueRange; // clipped in float32, as numpy does it there
        double perLevel = ((1L << p.quantBits) - 1) / (2 * p.valueRange);
        double[] scaled = new double[length];
        for (int i = 0; i < length; i++) {
            scaled[i] = ((double) Math.max(-bound, Math.min(bound, rotated[i]))) * perLevel;
        }
        long limit = (long) Math.floor(p.dpBound * p.dpBound);
        long[] rounded = new long[length];
        boolean within = false;
        for (int attempt = 0; attempt < MAX_ROUNDING_TRIES && !within; attempt++) {
            long norm2 = 0;
            for (int i = 0; i < length; i++) {
                rounded[i] = (long) Math.floor(scaled[i] + uniforms.getAsDouble());
                norm2 += rounded[i] * rounded[i];
            }
            within = norm2 <= limit;
        }
        if (!within) {
            throw new ProtocolException("conditional rounding stayed above the bound " + p.dpBound + " in "
                    + MAX_ROUNDING_TRIES + " tries", "bad_params");
        }
        long modulus = 1L << p.modulusBits;
        long[] codes = new long[length];
        for (int i = 0; i < length; i++) {
            codes[i] = Math.floorMod(rounded[i] + noise.getAsLong(), modulus);
        }
        return codes;
    }
}
