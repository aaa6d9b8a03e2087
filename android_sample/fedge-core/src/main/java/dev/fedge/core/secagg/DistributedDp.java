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
    /**
     * What a device can check of a round's noise without trusting the coordinator's
     * min_reports (as protocol.secagg.distributed_dp.total_noise_multiplier): the noise of all
     * the round's devices together, at most the {@code roster} whose keys it received, in
     * multiples of the sensitivity: sqrt(n sigma^2) / Delta.
     */
    public static double totalNoiseMultiplier(Params p, int roster) {
        return p.distributedDp() ? Math.sqrt(Math.min(p.n, roster) * p.dpVariance) / p.dpBound : 0.0;
    }

    /** Refuses ("dp_floor") a round whose noise is below this device's floor (0: none). */
    public static void checkNoiseFloor(Params p, int roster, double floor) {
        if (floor <= 0) {
            return;
        }
        if (!p.distributedDp()) {
            throw new dev.fedge.core.ProtocolException("this device takes part only under distributed DP with a "
                    + "total noise multiplier of at least " + floor + "; the round adds no device noise", "dp_floor");
        }
        double z = totalNoiseMultiplier(p, roster);
        if (z < floor) {
            throw new dev.fedge.core.ProtocolException("the round's device noise adds up to " + z
                    + " x the sensitivity, below this device's floor of " + floor, "dp_floor");
        }
    }

    public static LongSupplier osNoise(Params p, SecureRandom random) {
        return osNoise(p.dpVariance, random);
    }

    /** Exact N_Z(0, variance) draws from the OS CSPRNG; variance an integer (checked in Params). */
    public static LongSupplier osNoise(double variance, SecureRandom random) {
        BigInteger exact = new BigDecimal(variance).toBigIntegerExact();
        DiscreteGaussian.Uniform uniform = DiscreteGaussian.secure(random);
        return () -> toLongExact(DiscreteGaussian.sample(exact, BigInteger.ONE, uniform));
    }

    /**
     * Adaptive clipping under distributed DP: the clip bit plus its noise, mod 2^modulus_bits
     * (protocol.secagg.distributed_dp.encode_bit); nobody unmasks a noise-free count.
     */
    public static long encodeBit(boolean bit, int modulusBits, long noise) {
        return Math.floorMod((bit ? 1L : 0L) + noise, 1L << modulusBits);
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

    /** The value as a long, or ArithmeticException (BigInteger.longValueExact() is Android API 31). */
    static long toLongExact(BigInteger value) {
        if (value.bitLength() > 63) {
            throw new ArithmeticException("noise draw out of long range");
        }
        return value.longValue();
    }
}
