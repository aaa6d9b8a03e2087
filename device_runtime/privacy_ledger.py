"""What example-level DP-SGD has spent of this device's own data, over every round it uploaded.

Each uploaded round adds its `protocol.dp_sgd.DpSgdEvent`: ``steps`` Poisson-subsampled
Gaussian steps at noise multiplier z and sampling rate q. The ledger composes them with
dp-accounting's RDP accountant (the same accountant as the coordinator's user-level DP) and
reports epsilon at the task's delta. It lives in the device's state folder, so a restarted
device keeps counting where it stopped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from protocol.dp import RDP_ORDERS
from protocol.dp_sgd import DpSgdEvent

logging.getLogger("absl").setLevel(logging.ERROR)  # one warning per order a series does not converge for


@dataclass
class PrivacyLedger:
    # (noise multiplier, sampling rate) -> steps: steps of the same mechanism compose as one event
    steps: dict = field(default_factory=dict)

    def add(self, event: DpSgdEvent) -> None:
        key = (event.noise_multiplier, event.sampling_rate)
        self.steps[key] = self.steps.get(key, 0) + event.steps

    def epsilon(self, delta: float) -> float:
        """Example-level epsilon of everything recorded, at ``delta``; 0 before any step."""
        from dp_accounting import dp_event, rdp

        if not any(self.steps.values()):
            return 0.0
        accountant = rdp.RdpAccountant(list(RDP_ORDERS))
        for (z, q), count in sorted(self.steps.items()):
            if count:
                accountant.compose(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(z)), count)
        return float(accountant.get_epsilon(delta))

    def to_array(self) -> np.ndarray:
        return np.array([[z, q, n] for (z, q), n in sorted(self.steps.items())], np.float64).reshape(-1, 3)

    @classmethod
    def from_array(cls, rows: np.ndarray) -> "PrivacyLedger":
        return cls({(float(z), float(q)): int(n) for z, q, n in np.asarray(rows, np.float64).reshape(-1, 3)})
