package dev.fedge.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import org.junit.Test;

/** protocol/golden/releases.json: the rollout buckets and the signed statements, as Python has them. */
public class ReleaseGoldenTest {
    @Test
    public void rolloutBucketsAreThePythonOnes() throws Exception {
        int n = 0;
        for (JsonElement e : Golden.load("releases.json").getAsJsonObject().getAsJsonArray("rollout")) {
            JsonObject c = e.getAsJsonObject();
            String r = c.get("release_id").getAsString();
            String d = c.get("device_id").getAsString();
            assertEquals(r + "/" + d, c.get("bucket").getAsInt(), Release.rolloutBucket(r, d));
            assertEquals(c.get("in_10_percent").getAsBoolean(), Release.inRollout(r, d, 10.0));
            assertEquals(c.get("in_50_percent").getAsBoolean(), Release.inRollout(r, d, 50.0));
            n++;
        }
        assertEquals(15, n);
    }

    @Test
    public void signedStatementsVerifyExactlyWhenPythonSaysSo() throws Exception {
        JsonObject golden = Golden.load("releases.json").getAsJsonObject();
        String key = golden.get("public_key").getAsString();
        int valid = 0;
        for (JsonElement e : golden.getAsJsonArray("signed")) {
            JsonObject c = e.getAsJsonObject();
            Release offer = Release.fromJson(c.getAsJsonObject("offer"));
            if (c.has("statement")) {
                assertEquals(c.get("statement").getAsString(), Golden.hex(Release.statement(offer.population,
                        offer.channel, offer.releaseId, offer.sequence, offer.modelSha256)));
            }
            try {
                offer.verify(key, c.get("device_population").getAsString(), c.get("installed_sequence").getAsLong());
                assertTrue("accepted " + c, c.get("valid").getAsBoolean());
                valid++;
            } catch (ProtocolException ex) {
                if (c.get("valid").getAsBoolean()) {
                    fail("refused a valid release: " + ex.getMessage());
                }
                assertEquals(c.get("why").getAsString(), ex.code());
            }
        }
        assertEquals(3, valid);
    }
}
