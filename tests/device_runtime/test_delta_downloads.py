"""Delta downloads (the task's download_delta_codec): a device that holds an earlier full
checkpoint download of the task fetches only the quantized difference, reaches the current
checkpoint within the delta's quantization error, and spends a fraction of the bytes; a
device that holds nothing of the task, or names blobs that are not its bases, downloads the
checkpoint in full."""

import numpy as np
import pytest

from coordinator.http.app import COORDINATOR
from protocol import codec
from protocol.delta_download import apply_delta, delta_seed, make_delta
from protocol.errors import ProtocolError
from tests.device_runtime.test_device import run_one_device_to_completion


async def test_a_returning_device_downloads_deltas(live_coordinator, digits_tflite):
    dev = await run_one_device_to_completion(live_coordinator, digits_tflite, rounds=4, codec="f32",
                                             download_codec="q8", download_delta_codec="q4+rot")
    coordinator = live_coordinator.app[COORDINATOR]
    rounds = coordinator.admin.rounds("t")
    assert [r["state"] for r in rounds] == ["committed"] * 4
    # Round 1: the full q8 download (its base); rounds 2-4: base + delta.
    assert dev.stats.delta_downloads == 3
    full = rounds[0]["metrics"]["bytes_out"]
    later = [r["metrics"]["bytes_out"] for r in rounds[1:]]
    params = sum(w.size for w in coordinator.tasks["t"].manifest.weights)
    # A q4 delta is about half a q8 checkpoint (the model .tflite is only in round 1's bytes).
    assert all(b < 0.6 * params + 2048 for b in later), (full, later)


def _payload(values, spec="q8", seed=0):
    return codec.encode([np.asarray(values, np.float32)], codec.CodecSpec.parse(spec), np.random.default_rng(seed))


def test_a_delta_reaches_the_target_within_its_quantization_error():
    rng = np.random.default_rng(1)
    old = rng.normal(0, 0.3, 5000).astype(np.float32)
    new = old + rng.normal(0, 0.01, 5000).astype(np.float32)  # a round's worth of change
    base = _payload(old)
    target = codec.encode([new], codec.CodecSpec("f32"), None)
    spec = codec.CodecSpec.parse("q4+rot")
    delta = make_delta(base, target, spec, delta_seed("a" * 64, "b" * 64, spec.name))
    got = apply_delta(base, delta).values
    q8_error = np.abs(codec.decode(_payload(new)).values - new).max()
    assert np.abs(got - new).max() < q8_error  # 4 bits of a small difference beat 8 bits of the weights
    assert len(delta) < 0.55 * len(_payload(new))
    # Deterministic: every replica makes the same bytes for the same pair.
    assert make_delta(base, target, spec, delta_seed("a" * 64, "b" * 64, spec.name)) == delta


def test_a_delta_for_other_tensor_sizes_is_refused():
    base = _payload(np.zeros(100))
    other = _payload(np.zeros(99))
    with pytest.raises(ProtocolError) as refused:
        apply_delta(base, other)
    assert refused.value.code == "shape_mismatch"


async def test_blobs_that_are_not_the_tasks_bases_get_no_delta(live_coordinator, digits_tflite):
    from tests.device_runtime.conftest import create_task

    url = str(live_coordinator.make_url("")).rstrip("/")
    await create_task(url, digits_tflite, rounds=3, download_codec="q8", download_delta_codec="q4+rot")
    coordinator = live_coordinator.app[COORDINATOR]
    task = coordinator.tasks["t"]
    gateway = coordinator.gateway
    current = gateway.downloads.sha_for(task)
    assert gateway.downloads.delta_for(task, ("f" * 64, task.model_sha, current), current) is None
    assert gateway.downloads.delta_for(task, (), current) is None
