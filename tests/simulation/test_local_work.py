"""A simulated device's local work in system-only mode: updates of the task's size and codec,
and SecAgg deltas inside the clip norm, the same for the same (seed, device, round)."""

from types import SimpleNamespace

import numpy as np

from protocol import codec
from protocol.dp import exact_l2_norm
from protocol.messages import Plan
from protocol.tflite_file import read_manifest
from simulation.local_work import LocalWork


def _assignment(round_num: int, clip_norm: float = 0.0):
    return SimpleNamespace(round=round_num, plan=Plan(1, 16, 0.1, "q8", 256, clip_norm=clip_norm),
                           checkpoint_sha256="")


def test_system_only_updates_have_the_tasks_size_and_codec(digits_tflite):
    manifest = read_manifest(digits_tflite)
    work = LocalWork(0, 100, True, digits_tflite, manifest, store=None, stats=SimpleNamespace(trainings=0))
    body, meta = work.update(3, _assignment(1), work.examples(3))
    decoded = codec.decode(body)
    assert decoded.values.size == sum(w.size for w in manifest.weights) and meta.example_count == 100
    assert work.update(4, _assignment(2), 100)[0] is body  # one payload, made once
    assert work.payload_size(_assignment(5)) == len(body)


def test_secagg_deltas_are_clipped_and_reproducible(digits_tflite):
    manifest = read_manifest(digits_tflite)
    stats = SimpleNamespace(trainings=0)
    work = LocalWork(7, 100, True, digits_tflite, manifest, store=None, stats=stats)
    free = work.result(2, _assignment(1), 100)
    clipped = work.result(2, _assignment(1, clip_norm=0.05), 100)
    # Scaled in float32: the clipped norm is the clip within float32's rounding.
    assert exact_l2_norm(free.delta) > 0.05 and abs(exact_l2_norm(clipped.delta) - 0.05) < 1e-6
    again = LocalWork(7, 100, True, digits_tflite, manifest, store=None, stats=stats).result(2, _assignment(1), 100)
    assert np.array_equal(free.delta, again.delta)
    assert not np.array_equal(free.delta, work.result(3, _assignment(1), 100).delta)
    assert stats.trainings == 0  # nothing ran through LiteRT
