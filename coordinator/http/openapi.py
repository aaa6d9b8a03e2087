"""The OpenAPI 3 description served at /v1/openapi.json, with a JSON Schema for every request
body and parameter: what client generators read, and what the property-based fuzz test
(tests/coordinator/http/test_fuzz_openapi.py) generates requests from."""

from __future__ import annotations

from coordinator.tasks.config import TaskConfig
from coordinator.tasks.keys import json_schema
from protocol.dp_sgd import MAX_DP_SGD_STEPS
from protocol.messages import (MAX_ATTESTATION, MAX_CACHED_MODELS, MAX_CHECKIN_WAIT_S, MAX_COUNT, MAX_DP_SGD_NOISE,
                               MAX_LABEL, MAX_LOSS, MAX_SECRET)
from protocol.names import NAME_PATTERN
from protocol.releases import MAX_NAME, MAX_SEQUENCE
from coordinator.releases.desk import MAX_NOTE
from coordinator.tasks.config import MAX_ROUNDS

_ERR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_NAME = {"type": "string", "pattern": f"^{NAME_PATTERN}$"}
_SHA = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_B64 = {"type": "string", "maxLength": 4096}


def _obj(required: list[str], **properties) -> dict:
    return {"type": "object", "required": required, "properties": properties}


_RELEASE_NAME = {"type": "string", "minLength": 1, "maxLength": MAX_NAME}
_PERCENT = {"type": "number", "exclusiveMinimum": 0, "maximum": 100}

SCHEMAS = {
    "Error": _obj(["error"], error=_obj(["code", "message"], code={"type": "string"}, message={"type": "string"})),
    "PopulationRequest": _obj(["name"], name=_NAME, enrollment_secret={"type": "string", "maxLength": MAX_SECRET},
                              require_attestation={"type": "boolean"}),
    "TaskRequest": _obj(["model_sha256"], model_sha256=_SHA, task_id=_NAME, config={
        **json_schema(TaskConfig), "description": "the task settings (docs/coordinator.md), each declared once in "
        "coordinator.tasks.config; unknown keys are refused"}),
    "RegisterRequest": _obj(["population"], population=_NAME, label={"type": "string", "maxLength": MAX_LABEL},
                            enrollment_secret={"type": "string", "maxLength": MAX_SECRET},
                            attestation={"type": "string", "maxLength": MAX_ATTESTATION}),
    "DeviceState": _obj([], charging={"type": "boolean"}, unmetered={"type": "boolean"}, idle={"type": "boolean"},
                        battery={"type": "number", "minimum": 0, "maximum": 1},
                        free_storage_mb={"type": "number", "minimum": 0},
                        runtime={"type": "string", "maxLength": MAX_LABEL},
                        runtime_version={"type": "string", "maxLength": MAX_LABEL},
                        supports_flex={"type": "boolean"}),
    "CheckinRequest": _obj(["state"], state={"$ref": "#/components/schemas/DeviceState"},
                           cached_models={"type": "array", "items": _SHA, "maxItems": MAX_CACHED_MODELS},
                           wait_s={"type": "number", "minimum": 0, "maximum": MAX_CHECKIN_WAIT_S},
                           release_channel=_RELEASE_NAME,
                           release_sequence={"type": "integer", "minimum": 0, "maximum": MAX_SEQUENCE}),
    "ReleaseRequest": _obj(["round"], round={"type": "integer", "minimum": 0, "maximum": MAX_ROUNDS},
                           channel=_RELEASE_NAME, release_id=_RELEASE_NAME, percent=_PERCENT,
                           note={"type": "string", "maxLength": MAX_NOTE},
                           require_eval={"type": "number", "minimum": 0, "maximum": 1}),
    "PromoteRequest": _obj(["percent"], percent=_PERCENT),
    "UploadMeta": _obj(["example_count"], example_count={"type": "integer", "minimum": 1, "maximum": MAX_COUNT},
                       train_loss={"type": "number", "minimum": -MAX_LOSS, "maximum": MAX_LOSS},
                       eval_loss={"type": "number", "minimum": -MAX_LOSS, "maximum": MAX_LOSS},
                       eval_accuracy={"type": "number", "minimum": 0, "maximum": 1},
                       eval_count={"type": "integer", "minimum": 0, "maximum": MAX_COUNT},
                       below_clip={"type": "boolean"},
                       dp_sgd=_obj(["noise_multiplier", "sampling_rate", "steps"],
                                   noise_multiplier={"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DP_SGD_NOISE},
                                   sampling_rate={"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                                   steps={"type": "integer", "minimum": 0, "maximum": MAX_DP_SGD_STEPS}),
                       dp_sgd_epsilon={"type": "number", "minimum": 0}),
    "EvaluationReport": _obj(["examples", "correct", "loss_sum"],
                             examples={"type": "integer", "minimum": 1, "maximum": MAX_COUNT},
                             correct={"type": "number", "minimum": 0}, loss_sum={"type": "number", "minimum": 0}),
    "EvaluationRequest": _obj([], round={"type": "integer", "minimum": 0}, goal_count={"type": "integer", "minimum": 1},
                              eligibility={"type": "string"}, task_id=_NAME,
                              report_deadline_s={"type": "number"}, selection_window_s={"type": "number"}),
    "SecAggMessage": {"type": "object", "description": "keys {c_public, s_public}, shares {shares: [{sender, "
                      "receiver, ciphertext}]} or reveals {shares: [{owner, kind, share}]}",
                      "properties": {"c_public": _B64, "s_public": _B64, "shares": {"type": "array", "maxItems": 8,
                                     "items": {"type": "object", "properties": {
                                         "sender": {"type": "integer"}, "receiver": {"type": "integer"},
                                         "owner": {"type": "integer"}, "kind": {"enum": ["self", "secret"]},
                                         "ciphertext": _B64, "share": _B64}}}}},
}


def _path(name: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}


def _header(name: str, schema: dict, description: str, json: bool = False) -> dict:
    if json:  # a header carrying JSON: OpenAPI says so with content, not schema
        return {"name": name, "in": "header", "required": True, "description": description,
                "content": {"application/json": {"schema": schema}}}
    return {"name": name, "in": "header", "required": True, "description": description, "schema": schema}


def _op(summary: str, ok: str = "200", body: str | None = None, auth: str | None = None,
        schema: str | None = None, params: list | None = None) -> dict:
    op = {"summary": summary, "responses": {ok: {"description": "ok"}, "4XX": _ERR}}
    if body:
        content = {"schema": {"$ref": f"#/components/schemas/{schema}"}} if schema else {
            "schema": {"type": "string", "format": "binary"}}
        op["requestBody"] = {"required": True, "content": {body: content}}
    if auth:
        op["security"] = [{auth: []}]
    if params:
        op["parameters"] = params
    return op


_TASK = _path("task_id", _NAME)
_RELEASE = _path("release_id", _RELEASE_NAME)
_ROUND = _path("round", {"type": "integer", "minimum": 1})
_UPLOAD_TOKEN = _header("Fedge-Upload-Token", {"type": "string"}, "the upload token of the device's assignment")

OPENAPI = {
    "openapi": "3.0.3",
    "info": {"title": "fedge coordinator", "version": "v1"},
    "components": {
        "securitySchemes": {
            "admin": {"type": "http", "scheme": "bearer", "description": "admin token"},
            "device": {"type": "http", "scheme": "bearer", "description": "device token from /v1/devices/register"},
        },
        "schemas": SCHEMAS,
    },
    "paths": {
        "/v1/admin/populations": {
            "post": _op("create a population; enrollment_secret and require_attestation decide who may register",
                        "201", "application/json", "admin", "PopulationRequest"),
            "get": _op("list populations: devices registered and seen in the last hour, tasks", auth="admin")},
        "/v1/admin/models": {"post": _op("upload an exported .tflite; returns model_sha256 and manifest", "201",
                                         "application/octet-stream", "admin")},
        "/v1/admin/populations/{population}/tasks": {"post": _op(
            "create a task from an uploaded model and its config", "201", "application/json", "admin",
            "TaskRequest", [_path("population", _NAME)])},
        "/v1/admin/tasks": {"get": _op("list tasks", auth="admin")},
        "/v1/admin/tasks/{task_id}": {"get": _op("a task with its round records", auth="admin", params=[_TASK])},
        "/v1/admin/tasks/{task_id}/checkpoint": {"get": _op("redirect to the current global weights (FEDU f32)",
                                                             "302", auth="admin", params=[_TASK])},
        "/v1/admin/tasks/{task_id}/model": {"get": _op(
            "the task's .tflite with the current global weights embedded (fedge_initial_weights)", auth="admin",
            params=[_TASK])},
        "/v1/admin/tasks/{task_id}/evaluate": {"post": _op(
            "an evaluation task for a checkpoint of this task (round, default the latest): devices report counts on "
            "their holdout", "201", "application/json", "admin", "EvaluationRequest", [_TASK])},
        "/v1/admin/tasks/{task_id}/audit": {"get": _op(
            "the task's audit trail: hash-chained entries signed with the coordinator's Ed25519 key", auth="admin",
            params=[_TASK])},
        "/v1/audit/key": {"get": _op("the public key that signs audit trails (PEM)")},
        "/v1/admin/tasks/{task_id}/{action}": {"post": _op(
            "pause, resume or cancel", auth="admin",
            params=[_TASK, _path("action", {"enum": ["pause", "resume", "cancel"]})])},
        "/v1/admin/tasks/{task_id}/releases": {"post": _op(
            "release a committed round's checkpoint to the task's population (channel, percent of devices by a "
            "stable hash, require_eval: the round's federated evaluation at least this accurate)", "201",
            "application/json", "admin", "ReleaseRequest", [_TASK])},
        "/v1/admin/releases": {"get": _op("releases, newest first per channel", auth="admin", params=[
            {"name": "population", "in": "query", "required": False, "schema": _RELEASE_NAME},
            {"name": "channel", "in": "query", "required": False, "schema": _RELEASE_NAME}])},
        "/v1/admin/releases/{release_id}": {"get": _op("one release", auth="admin", params=[_RELEASE])},
        "/v1/admin/releases/{release_id}/promote": {"post": _op(
            "raise a release's percentage (it only grows)", body="application/json", auth="admin",
            schema="PromoteRequest", params=[_RELEASE])},
        "/v1/admin/releases/{release_id}/rollback": {"post": _op(
            "roll the channel's newest release back: a new release of the model before it, to every device", "201",
            auth="admin", params=[_RELEASE])},
        "/v1/releases/{release_id}": {"get": _op(
            "a release of the device's own population: the signed offer a check-in carries", auth="device",
            params=[_RELEASE])},
        "/v1/devices/register": {"post": _op("register; returns device_id and token", "201", "application/json",
                                             schema="RegisterRequest")},
        "/v1/checkin": {"post": _op("check in; returns an assignment or retry_at (wait_s > 0: long poll)",
                                    body="application/json", auth="device", schema="CheckinRequest")},
        "/v1/blobs/{sha}": {"get": _op("content-addressed model or checkpoint (ETag, immutable); a task model "
                                       "gzip-encoded when Accept-Encoding allows (the digest is the inflated file's)",
                                       params=[_path("sha", _SHA)])},
        "/v1/tasks/{task_id}/rounds/{round}/update": {"post": _op(
            "upload an update (protocol.codec layout)", "201", "application/octet-stream", "device",
            params=[_TASK, _ROUND, _UPLOAD_TOKEN, _header(
                "Fedge-Upload", {"$ref": "#/components/schemas/UploadMeta"}, "the update's metadata", json=True)])},
        "/v1/tasks/{task_id}/rounds/{round}/evaluation": {"post": _op(
            "an evaluation task's report: counts on the device's holdout", "201", "application/json", "device",
            "EvaluationReport", [_TASK, _ROUND, _UPLOAD_TOKEN])},
        "/v1/tasks/{task_id}/rounds/{round}/secagg": {"get": _op(
            "this device's view of the round's SecAgg state: roster and parameters, who shared and the sealed "
            "shares addressed to it, the unmasking request; held until the state moves on past 'since'",
            auth="device", params=[_TASK, _ROUND, _UPLOAD_TOKEN,
                                   {"name": "since", "in": "query", "schema": {"type": "string"}},
                                   {"name": "wait_s", "in": "query",
                                    "schema": {"type": "number", "minimum": 0, "maximum": 30}}])},
        "/v1/tasks/{task_id}/rounds/{round}/secagg/{phase}": {"post": _op(
            "a SecAgg message", "201", "application/json", "device", "SecAggMessage",
            [_TASK, _ROUND, _path("phase", {"enum": ["keys", "shares", "reveals"]}), _UPLOAD_TOKEN])},
        "/v1/openapi.json": {"get": _op("this document")},
        "/healthz": {"get": _op("liveness: 200 while the process answers")},
        "/readyz": {"get": _op("readiness: 200 when the database answers, else 503")},
        "/metrics": {"get": _op("Prometheus metrics (admin token unless served on loopback)")},
        "/": {"get": _op("the operator page (admin token unless served on loopback)")},
        "/v1/status": {"get": _op("what the operator page shows: populations (check-ins, eligibility, pace) and "
                                  "tasks (round in progress, history); admin token unless served on loopback")},
    },
}
