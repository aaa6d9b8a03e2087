package dev.fedge.core.dp;

import static org.junit.Assert.assertEquals;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.fedge.core.Golden;
import java.math.BigInteger;
import java.security.SecureRandom;
import org.junit.Test;

/** The discrete Gaussian sampler replays Python's recorded draws and returns Python's samples. */
public class DiscreteGaussianGoldenTest {
    @Test
    public void replaysPythonsDrawsExactly() throws Exception {
        int cases = 0;
        for (JsonElement e : Golden.load("discrete_gaussian.json").getAsJsonArray()) {
            JsonObject v = e.getAsJsonObject();
            JsonArray draws = v.getAsJsonArray("draws");
            int[] next = {0};
            DiscreteGaussian.Uniform replay = n -> {
                JsonArray d = draws.get(next[0]++).getAsJsonArray();
                assertEquals("draw " + next[0] + " asks for the same bound", d.get(0).getAsString(), n.toString());
                return new BigInteger(d.get(1).getAsString());
            };
            BigInteger num = new BigInteger(v.getAsJsonArray("sigma2").get(0).getAsString());
            BigInteger den = new BigInteger(v.getAsJsonArray("sigma2").get(1).getAsString());
            for (JsonElement s : v.getAsJsonArray("samples")) {
                assertEquals(s.getAsString(), DiscreteGaussian.sample(num, den, replay).toString());
            }
            assertEquals("every recorded draw used", draws.size(), next[0]);
            cases++;
        }
        assertEquals(4, cases);
    }

    @Test
    public void secureSamplesHaveTheRightSpread() {
        DiscreteGaussian.Uniform u = DiscreteGaussian.secure(new SecureRandom());
        int n = 4000;
        double sum = 0;
        double squares = 0;
        for (int i = 0; i < n; i++) {
            double x = DiscreteGaussian.sample(BigInteger.valueOf(9), BigInteger.ONE, u).doubleValue();
            sum += x;
            squares += x * x;
        }
        double mean = sum / n;
        double variance = squares / n - mean * mean;
        // sigma^2 = 9: the sample variance's standard error is about 9 * sqrt(2 / n) = 0.2.
        org.junit.Assert.assertTrue("mean " + mean, Math.abs(mean) < 0.25);
        org.junit.Assert.assertTrue("variance " + variance, Math.abs(variance - 9) < 1.0);
    }
}
