"""The OpenAPI 3 description served at /v1/openapi.json."""

_ERR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _op(summary: str, ok: str = "200", body: str | None = None, auth: str | None = None) -> dict:
    op = {"summary": summary, "responses": {ok: {"description": "ok"}, "4XX": _ERR}}
    if body:
        op["requestBody"] = {"required": True, "content": {body: {}}}
    if auth:
        op["security"] = [{auth: []}]
    return op


OPENAPI = {
    "openapi": "3.0.3",
    "info": {"title": "fedge coordinator", "version": "v1"},
    "components": {
        "securitySchemes": {
            "admin": {"type": "http", "scheme": "bearer", "description": "admin token"},
            "device": {"type": "http", "scheme": "bearer", "description": "device token from /v1/devices/register"},
        },
        "schemas": {
            "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                "code": {"type": "string"}, "message": {"type": "string"}}}}},
        },
    },
    "paths": {
        "/v1/admin/populations": {"post": _op("create a population {name}", "201", "application/json", "admin")},
        "/v1/admin/models": {"post": _op("upload an exported .tflite; returns model_sha256 and manifest", "201",
                                         "application/octet-stream", "admin")},
        "/v1/admin/populations/{population}/tasks": {"post": _op(
            "create a task {model_sha256, config, task_id?}; config: rounds, goal_count, over_selection, "
            "min_reports, selection_window_s, report_deadline_s, eligibility, epochs, batch_size, learning_rate, "
            "codec, chunk_size, clip_norm, secagg (off|secagg|secagg+), secagg_threshold, secagg_degree, "
            "secagg_bits, secagg_phase_s, server_optimizer", "201", "application/json", "admin")},
        "/v1/admin/tasks": {"get": _op("list tasks", auth="admin")},
        "/v1/admin/tasks/{task_id}": {"get": _op("a task with its round records", auth="admin")},
        "/v1/admin/tasks/{task_id}/checkpoint": {"get": _op("redirect to the current global weights (FEDU f32)",
                                                             "302", auth="admin")},
        "/v1/admin/tasks/{task_id}/model": {"get": _op(
            "the task's .tflite with the current global weights embedded (fedge_initial_weights)", auth="admin")},
        "/v1/admin/tasks/{task_id}/{action}": {"post": _op("pause, resume or cancel", auth="admin")},
        "/v1/devices/register": {"post": _op("register {population, label?}; returns device_id and token", "201",
                                             "application/json")},
        "/v1/checkin": {"post": _op("check in with {state, cached_models}; returns an assignment or retry_at",
                                    body="application/json", auth="device")},
        "/v1/blobs/{sha}": {"get": _op("content-addressed model or checkpoint (ETag, immutable)")},
        "/v1/tasks/{task_id}/rounds/{round}/update": {"post": _op(
            "upload an update (protocol.codec layout); headers Fedge-Upload-Token and Fedge-Upload (JSON meta)",
            "201", "application/octet-stream", "device")},
        "/v1/tasks/{task_id}/rounds/{round}/secagg": {"get": _op(
            "this device's view of the round's SecAgg state: roster and parameters, who shared and the sealed "
            "shares addressed to it, the unmasking request; ?since=STATE&wait_s=N holds it until the state moves "
            "on; header Fedge-Upload-Token", auth="device")},
        "/v1/tasks/{task_id}/rounds/{round}/secagg/{phase}": {"post": _op(
            "a SecAgg message: keys {c_public, s_public}, shares {shares: [{sender, receiver, ciphertext}]}, "
            "reveals {shares: [{owner, kind, share}]}; header Fedge-Upload-Token", "201", "application/json",
            "device")},
        "/metrics": {"get": _op("Prometheus metrics")},
        "/": {"get": _op("status page")},
    },
}
