"""Privacy accounting for DP-FedAvg rounds, by the RDP accountant of dp-accounting.

Each committed round is one Poisson-subsampled Gaussian mechanism: sampling rate
q = expected reports per round / population size, noise multiplier z (the whole
round's, see `protocol.dp`). Epsilon after T rounds is the accountant's, at the task's
delta; no formula of our own.
"""

from __future__ import annotations

import logging

from dp_accounting import dp_event, rdp

# Integer and a few fractional orders; the accountant picks the tightest.
_ORDERS = [1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 24.0, 32.0, 48.0, 64.0,
           128.0, 256.0]

# dp-accounting logs a warning per order its series does not converge for; the order is then skipped.
logging.getLogger("absl").setLevel(logging.ERROR)


def round_event(noise_multiplier: float, sampling_rate: float) -> dp_event.DpEvent:
    return dp_event.PoissonSampledDpEvent(min(1.0, sampling_rate), dp_event.GaussianDpEvent(noise_multiplier))


def epsilon(noise_multiplier: float, sampling_rate: float, rounds: int, delta: float) -> float:
    """Epsilon spent by ``rounds`` rounds; inf without noise."""
    if rounds <= 0:
        return 0.0
    if noise_multiplier <= 0:
        return float("inf")
    accountant = rdp.RdpAccountant(_ORDERS)
    accountant.compose(round_event(noise_multiplier, sampling_rate), rounds)
    return float(accountant.get_epsilon(delta))
