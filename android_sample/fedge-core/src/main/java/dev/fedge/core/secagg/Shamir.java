package dev.fedge.core.secagg;

import dev.fedge.core.ProtocolException;
import java.math.BigInteger;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Shamir t-out-of-n secret sharing over GF(p), p = 2^521 - 1 (protocol/secagg/shamir.py).
 * A 32-byte secret is the constant term of a random polynomial of degree t - 1; the share
 * at x is its value there, 66 bytes big-endian on the wire. Any t shares rebuild the
 * secret by Lagrange interpolation at 0; fewer say nothing about it.
 */
public final class Shamir {
    public static final BigInteger PRIME = BigInteger.ONE.shiftLeft(521).subtract(BigInteger.ONE);
    public static final int SECRET_BYTES = 32;
    public static final int SHARE_BYTES = 66;

    private Shamir() {
    }

    /** Shares of {@code secret} at the points {@code xs}; any {@code threshold} of them recover it. */
    public static Map<Integer, BigInteger> split(byte[] secret, Collection<Integer> xs, int threshold,
                                                 SecureRandom random) {
        if (secret.length != SECRET_BYTES) {
            throw new ProtocolException("a secret is " + SECRET_BYTES + " bytes", "bad_share");
        }
        if (threshold < 1 || threshold > xs.size()) {
            throw new ProtocolException("threshold " + threshold + " must be in [1, " + xs.size() + "]", "bad_share");
        }
        BigInteger[] coefficients = new BigInteger[threshold];
        coefficients[0] = new BigInteger(1, secret);
        for (int i = 1; i < threshold; i++) {
            BigInteger c;
            do {
                c = new BigInteger(521, random); // uniform below 2^521; rejects only p itself
            } while (c.compareTo(PRIME) >= 0);
            coefficients[i] = c;
        }
        return evaluate(coefficients, xs);
    }

    /** The polynomial with these coefficients (constant term first) at each x, by Horner's rule. */
    public static Map<Integer, BigInteger> evaluate(BigInteger[] coefficients, Collection<Integer> xs) {
        checkXs(xs);
        Map<Integer, BigInteger> shares = new LinkedHashMap<>();
        for (int x : xs) {
            BigInteger bx = BigInteger.valueOf(x);
            BigInteger y = BigInteger.ZERO;
            for (int i = coefficients.length - 1; i >= 0; i--) {
                y = y.multiply(bx).add(coefficients[i]).mod(PRIME);
            }
            shares.put(x, y);
        }
        return shares;
    }

    /** The secret from at least {@code threshold} shares (the lowest x-coordinates are used). */
    public static byte[] reconstruct(Map<Integer, BigInteger> shares, int threshold) {
        if (shares.size() < threshold) {
            throw new ProtocolException(shares.size() + " shares, need " + threshold, "below_threshold");
        }
        List<Integer> xs = new ArrayList<>(new java.util.TreeSet<>(shares.keySet())).subList(0, threshold);
        checkXs(xs);
        BigInteger secret = BigInteger.ZERO;
        for (int i : xs) {
            BigInteger num = BigInteger.ONE;
            BigInteger den = BigInteger.ONE;
            for (int j : xs) {
                if (j != i) {
                    num = num.multiply(BigInteger.valueOf(j)).mod(PRIME);
                    den = den.multiply(BigInteger.valueOf(j - i)).mod(PRIME);
                }
            }
            secret = secret.add(shares.get(i).multiply(num).multiply(den.modInverse(PRIME))).mod(PRIME);
        }
        if (secret.bitLength() > 8 * SECRET_BYTES) {
            throw new ProtocolException("shares are inconsistent (the recovered value is not a 32-byte secret)",
                    "bad_share");
        }
        return fixedWidth(secret, SECRET_BYTES);
    }

    public static byte[] toBytes(BigInteger share) {
        return fixedWidth(share, SHARE_BYTES);
    }

    public static BigInteger fromBytes(byte[] data) {
        if (data.length != SHARE_BYTES) {
            throw new ProtocolException("a share is " + SHARE_BYTES + " bytes", "bad_share");
        }
        BigInteger y = new BigInteger(1, data);
        if (y.compareTo(PRIME) >= 0) {
            throw new ProtocolException("share is not a field element", "bad_share");
        }
        return y;
    }

    private static byte[] fixedWidth(BigInteger value, int width) {
        byte[] raw = value.toByteArray(); // big-endian two's complement: maybe a leading 0 byte
        byte[] out = new byte[width];
        int copy = Math.min(raw.length, width);
        System.arraycopy(raw, raw.length - copy, out, width - copy, copy);
        return out;
    }

    private static void checkXs(Collection<Integer> xs) {
        if (new HashSet<>(xs).size() != xs.size()) {
            throw new ProtocolException("share x-coordinates must be distinct", "bad_share");
        }
        for (int x : xs) {
            if (x <= 0) {
                throw new ProtocolException("share x-coordinates must be in [1, p)", "bad_share");
            }
        }
    }
}
