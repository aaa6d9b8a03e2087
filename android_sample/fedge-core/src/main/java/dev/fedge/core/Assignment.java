package dev.fedge.core;

import com.google.gson.JsonObject;

/** A round this device was selected for (protocol.messages.Assignment). */
public final class Assignment {
    public final String taskId;
    public final int round;
    public final String uploadToken;
    public final Plan plan;
    public final String modelSha256;
    public final String modelUrl;
    public final String checkpointSha256;
    public final String checkpointUrl;
    public final String uploadUrl;
    /** Unix seconds; an update that arrives later is refused, so the device abandons instead. */
    public final double reportDeadline;
    /** SCAFFOLD: the server control variate's blob, "" otherwise. */
    public final String controlSha256;
    public final String controlUrl;
    /** Delta downloads: the full download this delta applies to, the delta's digest and URL ("" without). */
    public final String checkpointBaseSha256;
    public final String checkpointDeltaSha256;
    public final String checkpointDeltaUrl;

    private Assignment(JsonObject raw) {
        taskId = Json.string(raw, "task_id");
        round = Json.integer(raw, "round", null);
        uploadToken = Json.string(raw, "upload_token");
        plan = Plan.fromJson(Json.child(raw, "plan"));
        modelSha256 = Json.string(raw, "model_sha256");
        modelUrl = Json.string(raw, "model_url");
        checkpointSha256 = Json.string(raw, "checkpoint_sha256");
        checkpointUrl = Json.string(raw, "checkpoint_url");
        uploadUrl = Json.string(raw, "upload_url");
        reportDeadline = Json.number(raw, "report_deadline", null);
        controlSha256 = Json.string(raw, "control_sha256", "");
        controlUrl = Json.string(raw, "control_url", "");
        checkpointBaseSha256 = Json.string(raw, "checkpoint_base_sha256", "");
        checkpointDeltaSha256 = Json.string(raw, "checkpoint_delta_sha256", "");
        checkpointDeltaUrl = Json.string(raw, "checkpoint_delta_url", "");
    }

    public static Assignment fromJson(JsonObject raw) {
        return new Assignment(raw);
    }
}
