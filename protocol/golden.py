"""Golden test vectors: what any fedge client must produce, bit for bit.

The Python tests (tests/protocol/test_golden.py) rebuild these vectors from `protocol/`
and compare them with the committed files; the Java core of the Android sample
(android_sample/fedge-core) checks its codec, messages and mask expansion against the
same files. So neither client can drift from the contract without a test failing.

    python -m protocol.golden            # rewrite protocol/golden/*.json

Binary values are hex strings of little-endian bytes (float32 arrays as ``<f4``), so a
float survives the trip exactly. The codec cases carry the stochastic-rounding draws
(``uniforms``: one float32 per grid cell, K*C of them) since the two languages' random
generators differ; given the draws, the payload is fully determined.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from protocol import codec
from protocol.messages import Assignment, CheckinRequest, CheckinResponse, DeviceState, Plan, UploadMeta
from protocol.secagg import prg

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"

# (name, codec, chunk size, tensor sizes, rotation seed)
_CODEC_CASES = [
    ("f32_two_tensors", "f32", 256, [3, 2], 0),
    ("q8_two_chunks", "q8", 4, [5, 3], 0),
    ("q8_constant_chunk", "q8", 4, [8], 0),
    ("q8_softmax_regression", "q8", 256, [640, 10], 0),
    ("q4_odd_length", "q4", 8, [13], 0),
    ("q8_rot", "q8+rot", 16, [20, 7], 12345),
    ("q4_rot_big_seed", "q4+rot", 32, [50], 2**62 + 7),
]


def _hex_f32(values) -> str:
    return np.asarray(values, "<f4").tobytes().hex()


def codec_vectors() -> list[dict]:
    cases = []
    for i, (name, codec_name, chunk, counts, seed) in enumerate(_CODEC_CASES):
        rng = np.random.default_rng(1000 + i)
        values = rng.normal(0.0, 0.05, sum(counts)).astype(np.float32)
        if name == "q8_constant_chunk":
            values[:4] = np.float32(0.25)
        spec = codec.CodecSpec.parse(codec_name, chunk)
        arrays = codec.unflatten(values, [(n,) for n in counts])
        if spec.kind == "f32":
            uniforms = np.zeros(0, np.float32)
        else:
            length = -(-len(values) // chunk) * chunk if spec.rotate else len(values)
            uniforms = rng.random(-(-length // chunk) * chunk, dtype=np.float32)
        payload = codec.encode(arrays, spec, None, seed=seed, uniforms=uniforms if uniforms.size else None)
        decoded = codec.decode(payload, counts)
        cases.append({
            "name": name, "codec": codec_name, "chunk_size": chunk, "counts": counts, "rotation_seed": str(seed),
            "values": _hex_f32(values), "uniforms": _hex_f32(uniforms), "payload": payload.hex(),
            "decoded": _hex_f32(decoded.values),
        })
    return cases


def rotation_vectors() -> list[dict]:
    out = []
    for seed, length in [(1, 10), (12345, 300), (2**63 - 1, 64)]:
        signs = codec.rotation_signs(seed, length)
        rng = np.random.default_rng(seed % 1000)
        x = rng.normal(size=64).astype(np.float32)
        out.append({"seed": str(seed), "length": length, "signs": "".join("-" if s < 0 else "+" for s in signs),
                    "hadamard_chunk": 16, "hadamard_in": _hex_f32(x), "hadamard_out": _hex_f32(codec.hadamard_chunks(x, 16))})
    return out


def prg_vectors() -> list[dict]:
    out = []
    for seed, length, bits in [(bytes(range(32)), 16, 32), (bytes(range(32)), 20, 13), (bytes(32), 8, 32)]:
        words = prg.expand(seed, length, bits)
        out.append({"seed": seed.hex(), "length": length, "bits": bits, "words": [int(w) for w in words]})
    return out


def message_examples() -> dict:
    """One example of each control message, as the coordinator/devices put it on the wire."""
    state = DeviceState(charging=True, unmetered=True, idle=False, battery=0.8, free_storage_mb=2048.0,
                        runtime="litert", runtime_version="2.3.0", supports_flex=False)
    checkin = CheckinRequest(state, ("ab" * 32,), 10.0)
    plan = Plan(epochs=2, batch_size=32, learning_rate=0.05, codec="q8", chunk_size=256, clip_norm=3.0)
    assignment = Assignment(task_id="digits", round=7, upload_token="u-123", plan=plan, model_sha256="aa" * 32,
                            model_url="/v1/blobs/" + "aa" * 32, checkpoint_sha256="bb" * 32,
                            checkpoint_url="/v1/blobs/" + "bb" * 32, upload_url="/v1/tasks/digits/rounds/7/update",
                            report_deadline=1795000000.5)
    meta = UploadMeta(example_count=80, train_loss=0.5, eval_loss=0.75, eval_accuracy=0.875, eval_count=20)
    out = {
        "register_request": {"population": "phones", "label": "android"},
        "register_response": {"device_id": "d-1", "token": "d-1.secret"},
        "checkin_request": {"state": state.to_dict(), "cached_models": list(checkin.cached_models),
                            "wait_s": checkin.wait_s},
        "checkin_assigned": CheckinResponse("assigned", assignment=assignment).to_dict(),
        "checkin_retry": CheckinResponse("retry", retry_at=1795000030.25, reason="not eligible: charging").to_dict(),
        "upload_meta": {"example_count": meta.example_count, "train_loss": meta.train_loss,
                        "eval_loss": meta.eval_loss, "eval_accuracy": meta.eval_accuracy,
                        "eval_count": meta.eval_count},
        "error": {"error": {"code": "bad_request", "message": "missing field 'state'"}},
    }
    # Every example must parse with the coordinator's own strict parsers.
    CheckinRequest.from_dict(out["checkin_request"])
    CheckinResponse.from_dict(out["checkin_assigned"])
    CheckinResponse.from_dict(out["checkin_retry"])
    UploadMeta.from_dict(out["upload_meta"])
    return out


def all_vectors() -> dict[str, object]:
    return {"codec.json": codec_vectors(), "rotation.json": rotation_vectors(), "prg.json": prg_vectors(),
            "messages.json": message_examples()}


def render(vectors: object) -> str:
    return json.dumps(vectors, indent=1, sort_keys=True) + "\n"


def write(directory: Path = GOLDEN_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, vectors in all_vectors().items():
        path = directory / name
        path.write_text(render(vectors))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write():
        print(written)
