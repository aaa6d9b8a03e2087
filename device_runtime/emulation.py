"""What an emulated fleet adds to a device's round, as one backend the device calls at fixed
points of the protocol: how long training lasts on this phone, how many epochs it can do
(stragglers), whether it vanishes (dropouts) and where, and the poisoned update of a Byzantine
device. With `Behaviour`'s defaults every hook is neutral: a real device (`fedge device`)
runs the same code with nothing emulated."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from device_runtime.secagg_session import PHASES as SECAGG_PHASES
from protocol.messages import Plan


@dataclass
class Behaviour:
    """The knobs: how the device waits, how much slower than the host it is, and how it fails."""

    slowdown: float = 1.0  # compute time multiplier (a slow phone)
    dropout: float = 0.0  # probability of vanishing mid-round (without SecAgg: after training, before the upload)
    secagg_drop_phase: str = "any"  # with SecAgg, the phase before which a dropout vanishes ("any": one at random)
    safety_margin_s: float = 0.5
    long_poll_s: float = 10.0  # ask the coordinator to hold a no-slot check-in until a round opens
    attack: str = ""  # a Byzantine device (device_runtime.attacks): its update is poisoned
    # Emulated phone time for one local training at slowdown 1 (0: the host's own compute time):
    # training then lasts train_time_s x slowdown whatever the host's speed, so sync and async
    # runs of one population see the same device speeds.
    train_time_s: float = 0.0
    # Emulated stragglers (FedProx's section 5): each round, with this probability, the device
    # can do only a uniformly random number of epochs in [1, epochs].
    straggler: float = 0.0


class Emulation:
    def __init__(self, behaviour: Behaviour, rng: np.random.Generator):
        self.b, self.rng = behaviour, rng

    @property
    def attack(self) -> str:
        return self.b.attack

    def expected_train_s(self, plan: Plan, host_estimate_s: float) -> float:
        """How long this round's training will take on this device (``host_estimate_s``: the
        host's own compute time for it)."""
        if self.b.train_time_s > 0:
            full = self.b.train_time_s * self.b.slowdown
            return min(full, plan.max_local_seconds) if plan.max_local_seconds else full
        return host_estimate_s * self.b.slowdown

    def capacity_epochs(self, plan: Plan) -> int | None:
        """The epochs this device can do this round (None: all of them)."""
        capacity = None
        if self.b.straggler and self.rng.random() < self.b.straggler:
            capacity = int(self.rng.integers(1, plan.epochs + 1))
        if self.b.train_time_s > 0 and plan.max_local_seconds > 0:
            # Emulated phone time: the budget allows this many whole epochs.
            per_epoch = self.b.train_time_s * self.b.slowdown / plan.epochs
            allowed = int(plan.max_local_seconds // per_epoch)
            capacity = allowed if capacity is None else min(capacity, allowed)
        return capacity

    async def phone_time(self, plan: Plan, capacity: int | None, compute_s: float) -> None:
        """Wait out what this phone would have taken beyond the host's ``compute_s``."""
        if self.b.train_time_s > 0:
            done = 1.0 if capacity is None else min(capacity, plan.epochs) / plan.epochs
            await asyncio.sleep(max(0.0, self.b.train_time_s * self.b.slowdown * done - compute_s))
        elif self.b.slowdown > 1.0:
            # A slow phone computes longer; the time spent waiting for a free emulation
            # thread is the host's queue, not the phone's speed, and is not multiplied.
            await asyncio.sleep(compute_s * (self.b.slowdown - 1.0))

    def drops(self) -> bool:
        """Whether the device vanishes between training and its upload this round."""
        return bool(self.b.dropout) and self.rng.random() < self.b.dropout

    def secagg_drop_phase(self) -> str:
        """Under SecAgg: the phase before which the device vanishes this round ("": it stays)."""
        if not (self.b.dropout and self.rng.random() < self.b.dropout):
            return ""
        phase = self.b.secagg_drop_phase
        return SECAGG_PHASES[int(self.rng.integers(len(SECAGG_PHASES)))] if phase == "any" else phase
