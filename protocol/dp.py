"""User-level DP-FedAvg math (McMahan et al. 2018) with adaptive clipping (Andrew et al. 2021).

Pure functions shared by the device (clipping) and the coordinator (noise, clip update).
Privacy *accounting* is not here: it is the RDP accountant of dp-accounting, called by
`coordinator.aggregation.privacy`.

Each device clips its update to L2 norm C and, with adaptive clipping, reports the bit
b = [|update| <= C]. The coordinator sums the clipped updates, adds N(0, (z_update C)^2)
to every coordinate, and divides by the expected number of reports (a fixed
denominator, so one device's presence changes the sum by at most C). With adaptive
clipping the bits' sum gets N(0, sigma_b^2) noise and the clip moves geometrically toward
the target quantile gamma: C <- C exp(-eta (b_mean - gamma)). Splitting the privacy of
noise multiplier z between the two sums, z_update = (z^-2 - (2 sigma_b)^-2)^(-1/2)
(Andrew et al., Theorem 1), keeps the whole round as private as one Gaussian mechanism
of multiplier z, which is what the accountant is told.
"""

from __future__ import annotations

import math

import numpy as np

from protocol.errors import ProtocolError

# The Renyi orders every fedge accountant evaluates (dp-accounting's RdpAccountant picks the
# tightest): the coordinator's for user-level DP, a device's for its example-level DP-SGD.
RDP_ORDERS = (1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 24.0, 32.0, 48.0, 64.0,
              128.0, 256.0)


def l2_norm(values: np.ndarray) -> float:
    """The L2 norm, in float64 (the norm of float32 values of 1e30 overflows float32), and
    without BLAS: np.linalg.norm calls OpenBLAS, whose threads spin against LiteRT's training
    threads on the same cores; it took 60% of the coordinator's time (rounds 2.3x longer)."""
    flat = np.asarray(values, np.float64).ravel()
    return math.sqrt(float(np.einsum("i,i->", flat, flat)))


def exact_l2_norm(values: np.ndarray) -> float:
    """The L2 norm correctly rounded, the same on every CPU: what a golden vector or anything two
    runtimes must agree on bit for bit is scaled by. Each square of a float32 is exact in
    float64 and math.fsum adds them without rounding error, so neither a BLAS kernel (sdot,
    chosen by the CPU) nor a SIMD-width-dependent reduction decides the last bit.
    O(n) Python-level work: for vectors of golden/test size, not the hot path (l2_norm)."""
    flat = np.asarray(values, np.float64).ravel()
    return math.sqrt(math.fsum((flat * flat).tolist()))


def clip_l2(delta: np.ndarray, clip_norm: float, norm: float | None = None) -> tuple[np.ndarray, float]:
    """Scale ``delta`` so its L2 norm is at most ``clip_norm`` (0 disables); returns (delta, original norm).
    ``norm``: the delta's norm when the caller has it already."""
    norm = l2_norm(delta) if norm is None else norm
    if clip_norm > 0 and norm > clip_norm:
        delta = delta * (clip_norm / norm)
    return delta, norm


def update_noise_multiplier(noise_multiplier: float, clipped_count_stddev: float) -> float:
    """The multiplier left for the update sum when the clip bits' sum gets ``clipped_count_stddev`` noise."""
    if noise_multiplier <= 0:
        return 0.0
    if clipped_count_stddev <= 0:
        return noise_multiplier
    rest = noise_multiplier ** -2 - (2.0 * clipped_count_stddev) ** -2
    if rest <= 0:
        raise ProtocolError(f"clipped-count noise {clipped_count_stddev} is too small for noise multiplier "
                            f"{noise_multiplier}: need clipped_count_stddev > noise_multiplier / 2", "bad_params")
    return rest ** -0.5


def gaussian(size: int, stddev: float, rng: np.random.Generator) -> np.ndarray:
    return rng.normal(0.0, stddev, size) if stddev > 0 else np.zeros(size)


def next_clip(clip: float, below_fraction: float, target_quantile: float, learning_rate: float) -> float:
    """Geometric update toward the norm quantile ``target_quantile`` (Andrew et al. 2021, Alg. 1)."""
    return clip * math.exp(-learning_rate * (below_fraction - target_quantile))
