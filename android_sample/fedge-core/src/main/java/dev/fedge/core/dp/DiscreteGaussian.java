package dev.fedge.core.dp;

import java.math.BigInteger;
import java.security.SecureRandom;

/**
 * Exact sampling from the discrete Gaussian N_Z(0, sigma^2) (Canonne, Kamath and Steinke 2020,
 * algorithms 1-3) in exact rational arithmetic, as protocol/discrete_gaussian.py does: fed the
 * same uniform draws, both return the same samples (protocol/golden/discrete_gaussian.json).
 */
public final class DiscreteGaussian {
    /** A uniform integer in [0, n). */
    public interface Uniform {
        BigInteger below(BigInteger n);
    }

    /** The operating system's CSPRNG. */
    public static Uniform secure(SecureRandom random) {
        return n -> {
            BigInteger r;
            do {
                r = new BigInteger(n.bitLength(), random);
            } while (r.compareTo(n) >= 0);
            return r;
        };
    }

    /** A non-negative rational num / den in lowest terms. */
    static final class Frac {
        final BigInteger num;
        final BigInteger den;

        Frac(BigInteger num, BigInteger den) {
            if (den.signum() < 0) {
                num = num.negate();
                den = den.negate();
            }
            BigInteger g = num.gcd(den);
            if (g.signum() == 0) {
                g = BigInteger.ONE;
            }
            this.num = num.divide(g);
            this.den = den.divide(g);
        }

        static Frac of(long n, long d) {
            return new Frac(BigInteger.valueOf(n), BigInteger.valueOf(d));
        }

        Frac minus(Frac o) {
            return new Frac(num.multiply(o.den).subtract(o.num.multiply(den)), den.multiply(o.den));
        }

        Frac times(Frac o) {
            return new Frac(num.multiply(o.num), den.multiply(o.den));
        }

        Frac over(Frac o) {
            return new Frac(num.multiply(o.den), den.multiply(o.num));
        }

        int compareTo(Frac o) {
            return num.multiply(o.den).compareTo(o.num.multiply(den));
        }
    }

    private static final Frac ONE = Frac.of(1, 1);
    // BigInteger.TWO and BigInteger.sqrt() are Android API 33: neither is used here (minSdk 26).
    private static final BigInteger TWO = BigInteger.valueOf(2);

    private DiscreteGaussian() {
    }

    static boolean bernoulli(Frac p, Uniform uniform) {
        return uniform.below(p.den).compareTo(p.num) < 0;
    }

    static boolean bernoulliExpSmall(Frac gamma, Uniform uniform) {
        long k = 1;
        while (bernoulli(gamma.over(Frac.of(k, 1)), uniform)) {
            k++;
        }
        return k % 2 == 1;
    }

    static boolean bernoulliExp(Frac gamma, Uniform uniform) {
        while (gamma.compareTo(ONE) > 0) {
            if (!bernoulliExpSmall(ONE, uniform)) {
                return false;
            }
            gamma = gamma.minus(ONE);
        }
        return bernoulliExpSmall(gamma, uniform);
    }

    static BigInteger discreteLaplace(BigInteger t, Uniform uniform) {
        while (true) {
            BigInteger u = uniform.below(t);
            if (!bernoulliExp(new Frac(u, t), uniform)) {
                continue;
            }
            BigInteger v = BigInteger.ZERO;
            while (bernoulliExp(ONE, uniform)) {
                v = v.add(BigInteger.ONE);
            }
            BigInteger magnitude = u.add(t.multiply(v));
            boolean negative = uniform.below(TWO).equals(BigInteger.ONE);
            if (negative && magnitude.signum() == 0) {
                continue;
            }
            return negative ? magnitude.negate() : magnitude;
        }
    }

    /** One sample of N_Z(0, sigma2num / sigma2den). */
    public static BigInteger sample(BigInteger sigma2num, BigInteger sigma2den, Uniform uniform) {
        Frac sigma2 = new Frac(sigma2num, sigma2den);
        if (sigma2.num.signum() <= 0) {
            throw new IllegalArgumentException("the discrete Gaussian's variance must be > 0");
        }
        BigInteger t = floorSqrt(sigma2).add(BigInteger.ONE);
        Frac tFrac = new Frac(t, BigInteger.ONE);
        Frac twoSigma2 = sigma2.times(Frac.of(2, 1));
        while (true) {
            BigInteger y = discreteLaplace(t, uniform);
            Frac d = new Frac(y.abs(), BigInteger.ONE).minus(sigma2.over(tFrac));
            Frac gamma = d.times(d).over(twoSigma2);
            if (bernoulliExp(gamma, uniform)) {
                return y;
            }
        }
    }

    static BigInteger floorSqrt(Frac q) {
        BigInteger r = isqrt(q.num.divide(q.den));
        while (new Frac(r.add(BigInteger.ONE).pow(2), BigInteger.ONE).compareTo(q) <= 0) {
            r = r.add(BigInteger.ONE);
        }
        while (new Frac(r.pow(2), BigInteger.ONE).compareTo(q) > 0) {
            r = r.subtract(BigInteger.ONE);
        }
        return r;
    }

    /** floor(sqrt(n)) for n >= 0, exactly: Newton's iteration from above (BigInteger.sqrt() is API 33). */
    static BigInteger isqrt(BigInteger n) {
        if (n.signum() < 0) {
            throw new ArithmeticException("square root of a negative number");
        }
        if (n.bitLength() <= 1) {
            return n;
        }
        BigInteger x = BigInteger.ONE.shiftLeft((n.bitLength() + 1) / 2); // above sqrt(n)
        while (true) {
            BigInteger next = x.add(n.divide(x)).shiftRight(1);
            if (next.compareTo(x) >= 0) {
                return x;
            }
            x = next;
        }
    }
}
