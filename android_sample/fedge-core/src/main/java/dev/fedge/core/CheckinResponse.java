package dev.fedge.core;

import com.google.gson.JsonObject;

/** Either an assignment, or "come back at retryAt" with the reason (pace steering). */
public final class CheckinResponse {
    public final String outcome;
    public final double retryAt;
    public final String reason;
    public final Assignment assignment;

    private CheckinResponse(String outcome, double retryAt, String reason, Assignment assignment) {
        this.outcome = outcome;
        this.retryAt = retryAt;
        this.reason = reason;
        this.assignment = assignment;
    }

    public boolean assigned() {
        return assignment != null;
    }

    public static CheckinResponse fromJson(JsonObject raw) {
        String outcome = Json.string(raw, "outcome");
        if (outcome.equals("assigned")) {
            return new CheckinResponse(outcome, 0, "", Assignment.fromJson(Json.child(raw, "assignment")));
        }
        if (outcome.equals("retry")) {
            return new CheckinResponse(outcome, Json.number(raw, "retry_at", null), Json.string(raw, "reason", ""), null);
        }
        throw new ProtocolException("unknown check-in outcome '" + outcome + "'", "bad_response");
    }
}
