"""Privacy accounting for DP-FedAvg rounds, by the RDP accountant of dp-accounting.

Each committed round is one Poisson-subsampled Gaussian mechanism: sampling rate
q = expected reports per round / population size, noise multiplier z (the whole
round's, see `protocol.dp`). Epsilon after T rounds is the accountant's, at the task's
delta; no formula of our own.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from protocol.dp import RDP_ORDERS

# dp-accounting (with scipy) is imported by the functions that account: at module level it took
# 0.9 s of every start of the coordinator, `fedge simulate` and a sweep's workers, DP or not.
if TYPE_CHECKING:
    from dp_accounting import dp_event

# dp-accounting logs a warning per order its series does not converge for; the order is then skipped.
logging.getLogger("absl").setLevel(logging.ERROR)


def round_event(noise_multiplier: float, sampling_rate: float) -> dp_event.DpEvent:
    from dp_accounting import dp_event

    return dp_event.PoissonSampledDpEvent(min(1.0, sampling_rate), dp_event.GaussianDpEvent(noise_multiplier))


def distributed_round_event(noise_multiplier: float, clip_norm: float, quant_bits: int, num_values: int,
                            min_survivors: int, count_stddev: float = 0.0) -> dp_event.DpEvent:
    """One round of distributed DP: the sum of at least min_survivors devices' discrete
    Gaussian noise is (1/2) eps^2-zCDP with KLS theorem 1's eps (protocol.secagg.distributed_dp).
    With adaptive clipping (``count_stddev`` > 0) the noised sum of the clip bits (each bit
    0 or 1: sensitivity 1 in one dimension) is a second such release; zCDP adds them.
    No amplification by sampling is claimed: the server sees who took part."""
    from dp_accounting import dp_event

    from protocol.secagg import distributed_dp as ddp

    p = ddp.plan(noise_multiplier, clip_norm, quant_bits, num_values, min_survivors)
    eps = ddp.round_epsilon(p.bound, p.variance, min_survivors, p.length)
    rho = eps * eps / 2.0
    if count_stddev > 0:
        count = ddp.round_epsilon(1.0, ddp.count_variance(count_stddev, min_survivors), min_survivors, 1)
        rho += count * count / 2.0
    return dp_event.ZCDpEvent(rho)


def distributed_epsilon(event: dp_event.DpEvent, rounds: int, delta: float) -> float:
    from dp_accounting import rdp

    if rounds <= 0:
        return 0.0
    accountant = rdp.RdpAccountant(list(RDP_ORDERS))
    accountant.compose(event, rounds)
    return float(accountant.get_epsilon(delta))


def task_epsilon(config, update_size: int, rounds: int, sampling: float) -> float:
    """Epsilon spent by ``rounds`` committed rounds of a task (central or distributed DP)."""
    if config.distributed_dp:
        event = distributed_round_event(config.dp_noise_multiplier, config.clip_norm, config.secagg_bits,
                                        update_size, config.dp_noise_reporters,
                                        config.clipped_count_stddev if config.adaptive_clip else 0.0)
        return distributed_epsilon(event, rounds, config.dp_delta)
    return epsilon(config.dp_noise_multiplier, sampling, rounds, config.dp_delta)


def epsilon(noise_multiplier: float, sampling_rate: float, rounds: int, delta: float) -> float:
    """Epsilon spent by ``rounds`` rounds; inf without noise."""
    from dp_accounting import rdp

    if rounds <= 0:
        return 0.0
    if noise_multiplier <= 0:
        return float("inf")
    accountant = rdp.RdpAccountant(list(RDP_ORDERS))
    accountant.compose(round_event(noise_multiplier, sampling_rate), rounds)
    return float(accountant.get_epsilon(delta))


MAX_NOISE_MULTIPLIER = 1000.0  # the task config's bound on dp_noise_multiplier
MIN_NOISE_MULTIPLIER = 1e-3


class TargetUnreachable(ValueError):
    """No noise multiplier within bounds spends at most the target epsilon."""


def sampling_rate(goal_count: int, population: int) -> float:
    """goal / population: the task's explicit dp_population, never a count of registrations
    (anyone could lower the reported epsilon by registering more devices)."""
    return 1.0 if population < goal_count else goal_count / population


def calibrate_distributed_noise(target_epsilon: float, clip_norm: float, quant_bits: int, num_values: int,
                                min_survivors: int, rounds: int, delta: float, count_stddev: float = 0.0) -> float:
    """The smallest noise multiplier whose `rounds` rounds of distributed DP (with adaptive
    clipping's noised bits when ``count_stddev`` > 0) spend at most `target_epsilon` (the same
    zCDP accounting that reports epsilon, dp-accounting's calibration)."""
    from dp_accounting import dp_event

    def round_of(z: float) -> dp_event.DpEvent:
        return distributed_round_event(z, clip_norm, quant_bits, num_values, min_survivors, count_stddev)

    return _calibrate(target_epsilon, delta, lambda z: dp_event.SelfComposedDpEvent(round_of(z), rounds),
                      lambda z: distributed_epsilon(round_of(z), rounds, delta),
                      f"in {rounds} rounds with distributed DP for {min_survivors} survivors at delta {delta:g}",
                      "more min_reports")


def calibrate_noise(target_epsilon: float, sampling: float, rounds: int, delta: float) -> float:
    """The smallest noise multiplier whose `rounds` rounds spend at most `target_epsilon` at
    `delta` (dp-accounting's calibration over the same RDP accountant that reports epsilon).
    Raises TargetUnreachable, naming the smallest epsilon reachable, when even the largest
    noise multiplier a task may have spends more."""
    from dp_accounting import dp_event

    return _calibrate(target_epsilon, delta, lambda z: dp_event.SelfComposedDpEvent(round_event(z, sampling), rounds),
                      lambda z: epsilon(z, sampling, rounds, delta),
                      f"in {rounds} rounds at sampling rate {sampling:.4g} and delta {delta:g}",
                      "a larger dp_population")


def _calibrate(target_epsilon: float, delta: float, event_of, spent, setting: str, remedy: str) -> float:
    """dp-accounting's calibration of z for ``event_of(z)`` (the task's whole run), checked
    with ``spent(z)``, the epsilon the task would report."""
    from dp_accounting import mechanism_calibration, rdp

    floor = spent(MAX_NOISE_MULTIPLIER)
    if floor > target_epsilon:
        raise TargetUnreachable(
            f"dp_target_epsilon {target_epsilon:g} cannot be met {setting}: the smallest reachable epsilon is "
            f"{floor:.4g} (noise multiplier {MAX_NOISE_MULTIPLIER:g}); allow fewer rounds, {remedy} or a larger "
            f"target")
    if spent(MIN_NOISE_MULTIPLIER) <= target_epsilon:
        return MIN_NOISE_MULTIPLIER  # any noise at all meets a target this loose
    try:
        z = float(mechanism_calibration.calibrate_dp_mechanism(
            lambda: rdp.RdpAccountant(list(RDP_ORDERS)), event_of, target_epsilon, delta,
            mechanism_calibration.ExplicitBracketInterval(MIN_NOISE_MULTIPLIER, MAX_NOISE_MULTIPLIER), tol=1e-4))
    except (ValueError, mechanism_calibration.NoBracketIntervalFoundError) as exc:
        raise TargetUnreachable(f"cannot calibrate a noise multiplier to dp_target_epsilon {target_epsilon:g}: "
                                f"{exc}") from None
    # Brent's method lands within tol of the boundary, on either side: step up until it holds.
    while spent(z) > target_epsilon:
        z *= 1.0001
    return z
