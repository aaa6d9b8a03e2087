"""Golden test vectors: what any fedge client must produce, bit for bit.

The Python tests (tests/protocol/test_golden.py) rebuild these vectors from `protocol/`
and compare them with the committed files; the Java core of the Android sample
(android_sample/fedge-core) checks its codec, messages and mask expansion against the
same files. So neither client can drift from the contract without a test failing.

    python -m protocol.golden            # rewrite protocol/golden/*.json
    python -m protocol.golden DIR        # write them into DIR instead

Every value is computed without BLAS and without a reduction whose order depends on the
SIMD width (exact integer arithmetic, `protocol.dp.exact_l2_norm`, element-wise float
operations), so any x86-64 CPU writes the same bytes; tests/protocol/test_golden.py
regenerates them under other OpenBLAS and NumPy kernels to keep it so.

Binary values are hex strings of little-endian bytes (float32 arrays as ``<f4``), so a
float survives the trip exactly. The codec cases carry the stochastic-rounding draws
(``uniforms``: one float32 per grid cell, K*C of them) since the two languages' random
generators differ; given the draws, the payload is fully determined.
"""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import numpy as np

from protocol import codec, discrete_gaussian, dp
from protocol.golden_releases import release_vectors
from protocol.messages import PLAN_BOUNDS, Assignment, CheckinRequest, CheckinResponse, DeviceState, Plan, UploadMeta
from protocol.secagg import crypto, graph, prg, ring, shamir
from protocol.secagg.client import SecAggClient, share_aad
from protocol.secagg.messages import EncryptedShare, PublicKeys, SecAggParams, SecAggView, UnmaskRequest, round_context

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
    # Sparse (a round-shared subset; the sparse seed is the last field):
    ("f32_sparse", "f32+sparse:0.5", 256, [9, 4], 0, 3),
    ("q8_sparse_edge_padded", "q8+sparse:0.3", 4, [13, 6], 0, 77),
    ("q4_rot_sparse_big_seed", "q4+rot+sparse:0.1", 16, [50, 30], 999, 2**63 + 5),
    # Top-k (the largest magnitudes, their indices listed; ties are exercised by a repeated value):
    ("f32_topk", "f32+topk:0.25", 256, [9, 3], 0),
    ("q8_topk_ties", "q8+topk:0.2", 4, [17, 6], 0),
]


def _hex_f32(values) -> str:
    return np.asarray(values, "<f4").tobytes().hex()


def codec_vectors() -> list[dict]:
    cases = []
    for i, (name, codec_name, chunk, counts, seed, *sparse_seed) in enumerate(_CODEC_CASES):
        sparse_seed = sparse_seed[0] if sparse_seed else 0
        rng = np.random.default_rng(1000 + i)
        values = rng.normal(0.0, 0.05, sum(counts)).astype(np.float32)
        if name == "q8_constant_chunk":
            values[:4] = np.float32(0.25)
        if name == "q8_topk_ties":
            values[[2, 5, 11, 19]] = np.float32(0.2)  # four equal largest magnitudes, 0.2 and -0.2
            values[[7, 13]] = np.float32(-0.2)
        spec = codec.CodecSpec.parse(codec_name, chunk)
        arrays = codec.unflatten(values, [(n,) for n in counts])
        if spec.kind == "f32":
            uniforms = np.zeros(0, np.float32)
        else:
            length = spec.kept(len(values))  # the coded values: L, or the kept m when sparse
            uniforms = rng.random(-(-length // chunk) * chunk, dtype=np.float32)
        payload = codec.encode(arrays, spec, None, seed=seed, uniforms=uniforms if uniforms.size else None,
                               sparse_seed=sparse_seed)
        decoded = codec.decode(payload, counts)
        cases.append({
            "name": name, "codec": codec_name, "chunk_size": chunk, "counts": counts, "rotation_seed": str(seed),
            "sparse_seed": str(sparse_seed), "wire_codec": decoded.codec, "kept": decoded.kept,
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
    plan = Plan(epochs=2, batch_size=32, learning_rate=0.05, codec="q8+sparse:0.1", chunk_size=256, clip_norm=3.0,
                proximal_mu=0.25, max_local_seconds=30.5, partial_work=True, sparse_seed=2**53 - 1,
                dp_sgd_noise_multiplier=1.1, dp_sgd_clip=0.5, dp_sgd_delta=1e-6)
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
        "upload_meta_dp_sgd": {"example_count": 80, "train_loss": 0.5, "eval_loss": 0.75, "eval_accuracy": 0.875,
                               "eval_count": 20, "dp_sgd": {"noise_multiplier": 1.1, "sampling_rate": 0.4, "steps": 6}},
        "error": {"error": {"code": "bad_request", "message": "missing field 'state'"}},
    }
    # Every example must parse with the coordinator's own strict parsers.
    CheckinRequest.from_dict(out["checkin_request"])
    CheckinResponse.from_dict(out["checkin_assigned"])
    CheckinResponse.from_dict(out["checkin_retry"])
    UploadMeta.from_dict(out["upload_meta"])
    UploadMeta.from_dict(out["upload_meta_dp_sgd"])
    return out


def _private_key(first: int) -> bytes:
    return bytes(range(first, first + 32))


def secagg_vectors() -> dict:
    """Key agreement, sealing, Shamir shares, the neighbour graph, the shared grid and one
    device's masked input, each from fixed inputs (real clients draw keys, nonces, the
    self-mask seed, polynomial coefficients and rounding draws at random)."""
    context = round_context("digits", 3)
    a_private, b_private = _private_key(1), _private_key(101)
    a_public, b_public = crypto.public_of(a_private), crypto.public_of(b_private)
    shares_key = crypto.agree(a_private, b_public, context, crypto.PURPOSE_SHARES)
    mask_key = crypto.agree(a_private, b_public, context, crypto.PURPOSE_MASK)
    assert shares_key == crypto.agree(b_private, a_public, context, crypto.PURPOSE_SHARES)
    agreement = {"context": context.hex(), "a_private": a_private.hex(), "a_public": a_public.hex(),
                 "b_private": b_private.hex(), "b_public": b_public.hex(), "shares_key": shares_key.hex(),
                 "mask_key": mask_key.hex()}

    # A sealed share as a device sends it: nonce || ChaCha20-Poly1305(key, plaintext, aad).
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    nonce = bytes(range(200, 212))
    aad = share_aad(context, 1, 2)
    plaintext = struct.pack(">II", 1, 2) + bytes(range(2 * shamir.SHARE_BYTES))
    sealed_blob = nonce + ChaCha20Poly1305(shares_key).encrypt(nonce, plaintext, aad)
    assert crypto.open_sealed(shares_key, sealed_blob, aad) == plaintext
    sealed = {"key": shares_key.hex(), "aad": aad.hex(), "plaintext": plaintext.hex(), "sealed": sealed_blob.hex()}

    draws = random.Random(7)
    coefficients: list[int] = []

    def randbelow(bound: int) -> int:
        coefficients.append(draws.randrange(bound))
        return coefficients[-1]

    secret = bytes(range(32, 64))
    xs = [1, 2, 3, 5, 8]
    shares = shamir.split(secret, xs, 3, randbelow)
    assert shamir.reconstruct({x: shares[x] for x in (2, 5, 8)}, 3) == secret
    shamir_case = {"secret": secret.hex(), "threshold": 3, "coefficients": [hex(c) for c in coefficients],
                   "shares": {str(x): shamir.share_to_bytes(y).hex() for x, y in shares.items()}}

    graphs = []
    for n, degree in [(12, 4), (9, 3), (5, 4), (30, 10)]:
        seed = bytes(range(n, n + 32))
        graphs.append({"n": n, "degree": degree, "graph_seed": seed.hex(),
                       "neighbours": {str(u): sorted(v) for u, v in graph.neighbours(n, degree, seed).items()}})

    grids = []
    for quant_bits, devices, count, clip in [(8, 10, 300, 1.0), (14, 20, 37, 0.5)]:
        rng = np.random.default_rng(quant_bits)
        flat = rng.normal(0.0, 0.05, count).astype(np.float32)
        flat[:4] = np.float32(2.0)  # rotated, these put some coordinates beyond the range: clipped
        length = ring.padded_length(count)
        vrange = ring.value_range(clip, length)
        seed = 2**62 + quant_bits
        uniforms = rng.random(length)
        codes = ring.quantize(flat, quant_bits, vrange, seed, None, uniforms)
        rotated = ring.rotate(flat, length, seed)
        assert np.any(np.abs(rotated) > vrange)
        bits = ring.modulus_bits(quant_bits, devices)
        grids.append({"quant_bits": quant_bits, "modulus_bits": bits, "value_range": vrange, "rotation_seed": str(seed),
                      "values": _hex_f32(flat), "uniforms": np.asarray(uniforms, "<f8").tobytes().hex(),
                      "codes": [int(c) for c in codes], "packed": ring.pack(codes, bits).hex()})

    return {"agreement": agreement, "sealed": sealed, "shamir": shamir_case, "graphs": graphs, "grids": grids,
            "distributed": _distributed_dp_cases(), "distributed_clip_bits": _distributed_clip_bit_cases(),
            "masked_input": _masked_input_case(), "view": _view_example()}


def _distributed_dp_cases() -> list[dict]:
    """Distributed DP codes (protocol.secagg.distributed_dp.encode) with every draw recorded:
    the rounding uniforms of each attempt (the first case's first attempt rounds every
    coordinate away from zero, past the bound, so it must be drawn again) and the noise."""
    from protocol.secagg import distributed_dp as ddp

    cases = []
    for quant_bits, count, clip, z, survivors, force_redraw in [(8, 37, 1.0, 0.8, 5, True), (6, 300, 0.5, 1.2, 20, False)]:
        rng = np.random.default_rng(100 + quant_bits)
        flat = rng.normal(0.0, 1.0, count).astype(np.float32)
        flat *= np.float32(clip / dp.exact_l2_norm(flat))  # at the clip, as a device sends it
        plan = ddp.plan(z, clip, quant_bits, count, survivors)
        bits = ddp.modulus_bits(2 * survivors, quant_bits, plan.variance)
        seed = 2**61 + quant_bits
        scaled = np.clip(ring.rotate(flat, plan.length, seed), -plan.value_range, plan.value_range) * plan.per_level
        uniforms: list[np.ndarray] = []

        def draw(length: int) -> np.ndarray:
            u = (np.where(scaled >= 0, 0.999999, 0.0) if force_redraw and not uniforms else rng.random(length))
            uniforms.append(u)
            return u

        seeded = random.Random(quant_bits)  # any uniform source will do: the noise is recorded and replayed
        noise = np.array([discrete_gaussian.discrete_gaussian(ddp.exact_variance(plan.variance), seeded.randrange)
                          for _ in range(plan.length)], np.int64)
        codes = ddp.encode(flat, quant_bits, bits, plan.value_range, seed, plan.bound, draw, lambda _n: noise)
        assert not force_redraw or len(uniforms) > 1
        # The device-side floor's measure for a roster of 5 (as the Java test builds its params).
        as_params = SecAggParams(5, 4, 3, quant_bits, bits, plan.value_range, count, plan.length, seed, bytes(32),
                                 dp_variance=plan.variance, dp_bound=plan.bound)
        cases.append({"quant_bits": quant_bits, "modulus_bits": bits, "value_range": plan.value_range,
                      "rotation_seed": str(seed), "dp_bound": plan.bound, "dp_variance": plan.variance,
                      "total_noise_multiplier_of_5": ddp.total_noise_multiplier(as_params, 5),
                      "values": _hex_f32(flat), "attempts": len(uniforms),
                      "uniforms": np.concatenate(uniforms).astype("<f8").tobytes().hex(),
                      "noise": [int(v) for v in noise], "codes": [int(c) for c in codes]})
    return cases


def _distributed_clip_bit_cases() -> dict:
    """Adaptive clipping under distributed DP: the round's parameters (a clip-bit slot with its
    own noise variance) and bits plus noise as their extra-slot codes (protocol.secagg.
    distributed_dp.encode_bit), negative noise wrapping around the ring."""
    from protocol.secagg import distributed_dp as ddp

    params = SecAggParams(5, 4, 3, 8, 19, 0.5, 37, 64, 2**62 + 5, bytes(range(32)), extra=1, dp_variance=9.0,
                          dp_bound=400.0, dp_count_variance=ddp.count_variance(3.0, 4))
    cases = [{"bit": bit, "noise": noise, "code": ddp.encode_bit(bool(bit), params.modulus_bits, noise)}
             for bit, noise in ((0, 0), (1, 0), (1, 3), (0, -1), (1, -5), (0, 262143))]
    return {"params": params.to_dict(), "cases": cases}


def _masked_input_case() -> dict:
    """Device 3 of a SecAgg+ roster of 6 (degree 4) masks its codes: y = x + PRG(b) + sum over
    its neighbours v that shared keys of +-PRG(s_3v) mod 2^k (+ when 3 < v)."""
    context = round_context("digits", 4)
    n, degree, graph_seed = 6, 4, bytes(range(9, 41))
    keys = {}
    for i in range(1, n + 1):
        keys[i] = PublicKeys(crypto.public_of(_private_key(10 * i)), crypto.public_of(_private_key(10 * i + 5)))
    params = SecAggParams(n=n, degree=degree, threshold=2, quant_bits=8, modulus_bits=11, value_range=0.1,
                          num_values=5, length=8, rotation_seed=3, graph_seed=graph_seed, extra=1)
    client = SecAggClient(context)
    client.c = crypto.KeyPair(_private_key(30), keys[3].c_public)
    client.s = crypto.KeyPair(_private_key(35), keys[3].s_public)
    client.share_keys(3, params, keys)
    client._b = bytes(range(70, 102))  # the self-mask seed, fixed here
    client.sharers = frozenset({1, 2, 3, 4, 6})  # device 5 did not share: no mask with it
    codes = np.array([0, 255, 17, 128, 1, 2, 3, 4, 1], np.uint32)
    masked = client.mask(codes)
    return {"context": context.hex(), "my_index": 3, "params": params.to_dict(),
            "keys": {str(i): k.to_dict() for i, k in keys.items()}, "s_private": _private_key(35).hex(),
            "self_mask_seed": client._b.hex(), "sharers": sorted(client.sharers),
            "neighbours": sorted(client.neighbours), "codes": [int(c) for c in codes],
            "masked": [int(v) for v in masked]}


def _view_example() -> dict:
    """A reporting-state SecAgg view, as GET .../secagg returns it (strictly parsed here)."""
    params = SecAggParams(n=3, degree=2, threshold=2, quant_bits=8, modulus_bits=10, value_range=0.25,
                          num_values=650, length=1024, rotation_seed=2**62 + 1, graph_seed=bytes(range(32)), extra=1)
    keys = {i: PublicKeys(crypto.public_of(_private_key(i)), crypto.public_of(_private_key(i + 50)))
            for i in (1, 2, 3)}
    inbox = (EncryptedShare(1, 2, bytes(range(12 + 8 + 2 * shamir.SHARE_BYTES + 16))),
             EncryptedShare(3, 2, bytes(range(1, 13 + 8 + 2 * shamir.SHARE_BYTES + 16))))
    view = SecAggView("unmasking", 2, params, keys, (1, 2, 3), inbox, UnmaskRequest((1, 2), (3,)))
    raw = json.loads(json.dumps(view.to_dict()))
    assert SecAggView.from_dict(raw) == view
    return raw


def scaffold_vectors() -> list[dict]:
    """SCAFFOLD's option II on the device (protocol.scaffold), float32 hex like the codec's."""
    from protocol import scaffold

    out = []
    for seed, n, steps, lr, momentum, nesterov in ((1, 7, 6, 0.1, 0.0, False), (2, 33, 1, 0.5, 0.0, False),
                                                   (3, 5, 0, 0.1, 0.0, False), (4, 9, 15, 0.05, 0.9, False),
                                                   (5, 6, 40, 0.01, 0.95, True)):
        rng = np.random.default_rng(seed)
        c, c_i, delta = (rng.normal(size=n).astype(np.float32) * s for s in (0.01, 0.02, 0.05))
        nxt = scaffold.next_control(c, c_i, delta, steps, lr, momentum, nesterov)
        update = scaffold.update_vector(delta, c_i, nxt)
        # As a q8 upload decodes (rounding error included): the c_i a device keeps after it.
        sent = (update + rng.uniform(-1e-3, 1e-3, update.size)).astype(np.float32)
        out.append({"c": c.tobytes().hex(), "c_i": c_i.tobytes().hex(), "delta": delta.tobytes().hex(),
                    "steps": steps, "learning_rate": lr, "momentum": momentum, "nesterov": nesterov,
                    "effective_steps": scaffold.effective_steps(steps, momentum, nesterov),
                    "next_control": nxt.tobytes().hex(),
                    "update": update.tobytes().hex(), "sent": sent.tobytes().hex(),
                    "after_sent": scaffold.after_sent(c_i, sent).tobytes().hex()})
    return out


def train_signature_vectors() -> list[dict]:
    """Which train signature a device steps with (protocol.manifest.train_signature), for a
    current file (one train step), one exported with --dp-sgd, one exported with the second
    train_plain step (releases between FedProx and the one-step file) and one exported before
    FedProx."""
    from protocol.manifest import train_signature

    files = {"dp_sgd": ["evaluate", "get_weights", "infer", "set_control", "set_weights", "train", "train_dp"],
             "current": ["evaluate", "get_weights", "infer", "set_control", "set_weights", "train"],
             "with_train_plain": ["evaluate", "get_weights", "infer", "set_control", "set_weights", "train",
                                  "train_plain"],
             "before_fedprox": ["evaluate", "get_weights", "infer", "set_weights", "train"]}
    return [{"file": name, "signatures": signatures, "proximal_mu": mu, "corrected": corrected, "dp_sgd": dp,
             "signature": train_signature(signatures, mu, corrected, dp)}
            for name, signatures in files.items() for mu in (0.0, 0.5) for corrected in (False, True)
            for dp in ((False, True) if name == "dp_sgd" else (False,))]


def delta_download_vectors() -> list[dict]:
    """A base checkpoint download (q8), the delta the coordinator makes to a target (q4+rot and
    q8), and the float32 values base + delta (protocol.delta_download.apply_delta)."""
    from protocol.delta_download import apply_delta, delta_seed, make_delta

    rng = np.random.default_rng(11)
    counts = [40, 7, 33]
    old = rng.normal(0.0, 0.3, sum(counts)).astype(np.float32)
    new = (old + rng.normal(0.0, 0.02, old.size)).astype(np.float32)
    base = codec.encode(codec.unflatten(old, [(n,) for n in counts]), codec.CodecSpec.parse("q8", 16),
                        np.random.default_rng(1))
    target = codec.encode(codec.unflatten(new, [(n,) for n in counts]), codec.CodecSpec("f32"), None)
    out = []
    for name in ("q4+rot", "q8"):
        spec = codec.CodecSpec.parse(name, 16)
        delta = make_delta(base, target, spec, delta_seed("b" * 64, "t" * 64, spec.name))
        out.append({"codec": name, "base": base.hex(), "delta": delta.hex(),
                    "values": apply_delta(base, delta).values.astype("<f4").tobytes().hex()})
    return out


def dp_sgd_vectors() -> list[dict]:
    """The DP-SGD event a device reports (protocol.dp_sgd.DpSgdEvent.of_round) for its noise
    multiplier, the file's batch, its local examples and the steps it took."""
    from protocol.dp_sgd import DpSgdEvent

    cases = ((1.1, 32, 640, 40), (0.7, 32, 20, 3), (2.0, 16, 1000, 63), (1.0, 8, 3, 1))
    return [{"noise_multiplier": z, "batch_size": b, "examples": n, "steps": k,
             "event": DpSgdEvent.of_round(z, b, n, k).to_dict()} for z, b, n, k in cases]


def discrete_gaussian_vectors() -> list[dict]:
    """Samples of protocol.discrete_gaussian with every uniform draw recorded (the bound asked
    for and the value given), so another implementation can replay them exactly."""
    import random
    from fractions import Fraction

    from protocol.discrete_gaussian import discrete_gaussian

    out = []
    for seed, sigma2 in ((1, Fraction(1, 2)), (2, Fraction(4)), (3, Fraction(37, 3)), (4, Fraction(100))):
        rng = random.Random(seed)
        draws: list[list[str]] = []

        def uniform(n: int) -> int:
            value = rng.randrange(n)
            draws.append([str(n), str(value)])
            return value

        samples = [discrete_gaussian(sigma2, uniform) for _ in range(5)]
        out.append({"sigma2": [str(sigma2.numerator), str(sigma2.denominator)], "draws": draws,
                    "samples": [str(s) for s in samples]})
    return out


def all_vectors() -> dict[str, object]:
    return {"codec.json": codec_vectors(), "rotation.json": rotation_vectors(), "prg.json": prg_vectors(),
            "messages.json": message_examples(), "secagg.json": secagg_vectors(), "scaffold.json": scaffold_vectors(),
            "discrete_gaussian.json": discrete_gaussian_vectors(), "train_signature.json": train_signature_vectors(),
            "dp_sgd.json": dp_sgd_vectors(), "delta_download.json": delta_download_vectors(),
            "plan_bounds.json": plan_bounds(), "releases.json": release_vectors()}


def plan_bounds() -> dict:
    """The bounds a device holds a plan to (protocol.messages.PLAN_BOUNDS): the Java core reads
    this file (packaged with it) instead of writing its own copy of the numbers."""
    return {name: [lo, hi] for name, (lo, hi) in PLAN_BOUNDS.items()}


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
    import sys

    # An optional folder: tests regenerate into a scratch one under other CPU kernels and compare.
    for written in write(Path(sys.argv[1]) if len(sys.argv) > 1 else GOLDEN_DIR):
        print(written)
