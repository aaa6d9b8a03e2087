package dev.fedge.core;

import com.google.gson.JsonObject;

/** Either an assignment, or "come back at retryAt" with the reason (pace steering). */
public final class CheckinResponse {
    public final String outcome;
    public final double retryAt;
    public final String reason;
    public final Assignment assignment;
    /** A newer model release for this device to infer with, or null. */
    public final Release release;

    private CheckinResponse(String outcome, double retryAt, String reason, Assignment assignment, Release release) {
        this.outcome = outcome;
        this.retryAt = retryAt;
        this.reason = reason;
        this.assignment = assignment;
        this.release = release;
    }

    public boolean assigned() {
        return assignment != null;
    }

    public static CheckinResponse fromJson(JsonObject raw) {
        String outcome = Json.string(raw, "outcome");
        Release release = raw.has("release") && raw.get("release").isJsonObject()
                ? Release.fromJson(raw.getAsJsonObject("release")) : null;
        if (outcome.equals("assigned")) {
            return new CheckinResponse(outcome, 0, "", Assignment.fromJson(Json.child(raw, "assignment")), release);
        }
        if (outcome.equals("retry")) {
            return new CheckinResponse(outcome, Json.number(raw, "retry_at", null), Json.string(raw, "reason", ""), null,
                    release);
        }
        throw new ProtocolException("unknown check-in outcome '" + outcome + "'", "bad_response");
    }
}
