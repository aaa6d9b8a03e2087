"""What an update may be, from the task's plan alone (pure; the gateway refuses, counts and
raises): its body's size limit, and what its metadata may claim of example-level DP-SGD."""

from __future__ import annotations

from typing import TYPE_CHECKING

from coordinator.rounds.round_metrics import max_dp_sgd_steps
from protocol import sparse
from protocol.messages import UploadMeta
from protocol.secagg import ring

if TYPE_CHECKING:
    from coordinator.tasks.registry import Task


def body_limit(task: "Task") -> int:
    """The exact size of the task's update body (its codec's), or a masked input's at most 32
    bits a code under SecAgg (sparse: only the kept codes): larger bodies are refused unread."""
    if task.config.secagg_on:
        length = ring.padded_length(task.update_size)
        fraction = task.config.codec_spec().sparse
        return ring.packed_size(32, (sparse.kept_count(fraction, length) if fraction else length)
                                + task.config.secagg_extra_slots)
    return task.config.codec_spec().max_payload_bytes(len(task.update_counts), task.update_size)


def dp_sgd_refusal(task: "Task", meta: UploadMeta) -> tuple[str, str] | None:
    """(code, message) when the metadata claims DP-SGD the plan does not have, lacks the noise
    it has (unverifiable, but a device that skipped it is refused, not averaged in), or more
    steps than it allows; None when the claim fits the plan."""
    z = task.config.dp_sgd_noise_multiplier
    if z > 0 and (meta.dp_sgd is None or meta.dp_sgd["noise_multiplier"] < z * (1 - 1e-6)):
        return "no_dp_sgd", (f"this task trains with example-level DP-SGD (noise multiplier {z:g}): the upload must "
                             "report its dp_sgd steps at that noise")
    if z <= 0 and (meta.dp_sgd is not None or meta.dp_sgd_epsilon is not None):
        return "unrequested_field", "this task does not train with DP-SGD: dp_sgd and dp_sgd_epsilon are not asked for"
    most = max_dp_sgd_steps(task.config, task.manifest.batch_size)
    if meta.dp_sgd is not None and meta.dp_sgd["steps"] > most:
        return "bad_dp_sgd", (f"{meta.dp_sgd['steps']} DP-SGD steps where the plan allows at most {most} "
                              f"({task.config.epochs} epochs of at most {task.config.max_example_count} examples in "
                              f"batches of {task.manifest.batch_size})")
    return None
