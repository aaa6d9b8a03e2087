"""Example-level DP-SGD on a device: what a device reports of the steps it took.

A device that trains with the file's ``train_dp`` (a plan with ``dp_sgd_noise_multiplier``)
reports each round's `DpSgdEvent`: the noise multiplier, the sampling rate of a batch from
its local data and the steps taken. That is all an accountant needs: the round spent
``steps`` compositions of the Poisson-subsampled Gaussian mechanism with rate q and noise
multiplier z (Abadi et al. 2016; Mironov 2017), the standard way DP-SGD is accounted.

Devices take batches from a shuffled pass over their data rather than by Poisson sampling;
like tensorflow-privacy's own accounting, fedge accounts them as Poisson with q = batch /
examples (docs/security.md says what that assumes). The accounting itself runs on the device
(device_runtime.privacy_ledger) and on the coordinator (coordinator.aggregation.example_privacy),
with dp-accounting; this module is the message and its bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from protocol.errors import ProtocolError
from protocol.fields import MAX_DP_SGD_NOISE, get_field

MAX_DP_SGD_STEPS = 10_000_000  # optimizer steps of one round on one device


def sampling_rate(batch_size: int, examples: int) -> float:
    """q: the chance that one example is in one batch."""
    if batch_size < 1 or examples < 1:
        raise ValueError("batch_size and examples must be >= 1")
    return min(1.0, batch_size / examples)


@dataclass(frozen=True)
class DpSgdEvent:
    """One round's DP-SGD on one device: `steps` Gaussian steps at `noise_multiplier`, each
    on a batch sampled at rate `sampling_rate` from the device's data."""

    noise_multiplier: float
    sampling_rate: float
    steps: int

    def to_dict(self) -> dict:
        return {"noise_multiplier": self.noise_multiplier, "sampling_rate": self.sampling_rate, "steps": self.steps}

    @classmethod
    def from_dict(cls, raw: Any) -> "DpSgdEvent":
        z = get_field(raw, "noise_multiplier", float, lo=0.0, hi=MAX_DP_SGD_NOISE)
        q = get_field(raw, "sampling_rate", float, lo=0.0, hi=1.0)
        steps = get_field(raw, "steps", int, lo=0, hi=MAX_DP_SGD_STEPS)
        if z <= 0 or q <= 0:
            raise ProtocolError("a DP-SGD event has noise_multiplier > 0 and sampling_rate > 0", "bad_request")
        return cls(z, q, steps)

    @classmethod
    def of_round(cls, noise_multiplier: float, batch_size: int, examples: int, steps: int) -> "DpSgdEvent":
        """What a device reports after `steps` train_dp steps over `examples` local examples."""
        if not (noise_multiplier > 0 and math.isfinite(noise_multiplier)):
            raise ValueError("noise_multiplier must be > 0")
        return cls(float(noise_multiplier), sampling_rate(batch_size, examples), int(steps))
