"""Distributed differential privacy under secure aggregation: the distributed discrete
Gaussian (Kairouz, Liu and Steinke, "The Distributed Discrete Gaussian Mechanism for
Federated Learning with Secure Aggregation", ICML 2021).

The server never holds noise-free data it could leak: each device adds its own share of the
noise, on the integer grid, before it masks its input. The sum the server unmasks already
carries noise of variance n * sigma^2 (n survivors), enough for the task's guarantee as
long as at least ``min_survivors`` devices report (the round fails otherwise).

Per device, in the paper's order:

1. clip the delta to L2 norm C (the device does it; the server bounds the sum again);
2. zero-pad to a power of two L and rotate by the randomized Hadamard transform of the
   round (`protocol.secagg.ring`: the same rotation, range r and grid as plain SecAgg);
3. scale to grid units (x * (2^b - 1) / 2r, coordinates clipped to [-r, r] first) and round
   each coordinate stochastically, *conditionally*: draw again until the rounded vector's
   L2 norm is at most the bound Delta (KLS eq. (5), beta = exp(-1/2)); Delta is the
   sensitivity the accounting uses;
4. add N_Z(0, sigma^2) to each coordinate (`protocol.discrete_gaussian`, exact);
5. reduce mod 2^k (signed values wrap; the modulus has room for n devices' codes plus eight
   standard deviations of the summed noise, so the centred sum never wraps in practice).

Accounting: the sum of n i.i.d. N_Z(0, sigma^2) with an L2 sensitivity Delta in dimension d
is (1/2) eps^2-concentrated DP with eps from KLS theorem 1 (`round_epsilon`); rounds compose
by dp-accounting's zCDP event (`coordinator.aggregation.privacy`).

Trust: the parameters (sigma^2, Delta, k) are the server's, like the rest of the round's
parameters; an honest-but-curious server that follows the protocol learns only the noised
sum. Everything here is pure and deterministic given its random draws, so the Java core
reproduces the codes exactly (protocol/golden/secagg.json, "distributed").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import numpy as np

from protocol import discrete_gaussian
from protocol.errors import ProtocolError
from protocol.secagg import ring

ROUNDING_BETA = math.exp(-0.5)  # KLS's choice: a draw is kept with probability at least 1 - beta
MAX_ROUNDING_TRIES = 1000  # P(all fail) <= beta^1000: a device that exceeds it has a wrong bound
# sigma^2 is rounded up to an integer: exact everywhere, and the vectorized exact sampler
# (protocol.discrete_gaussian.sample_many) keeps every ratio in int64.
NOISE_SIGMAS = 8.0  # the modulus holds this many standard deviations of the summed noise
MAX_MODULUS_BITS = 32


def per_level(quant_bits: int, vrange: float) -> float:
    """Grid units per update unit: (2^b - 1) / 2r (one grid step is its inverse)."""
    return ((1 << quant_bits) - 1) / (2.0 * vrange)


def rounding_bound(scaled_clip: float, length: int, beta: float = ROUNDING_BETA) -> float:
    """Delta_2 of conditional randomized rounding (KLS eq. (5)): a vector of L2 norm at most
    ``scaled_clip`` in dimension ``length``, rounded coordinate by coordinate, stays within
    it with probability at least 1 - beta."""
    c, d = float(scaled_clip), float(length)
    loose = c + math.sqrt(d)
    tight = math.sqrt(c * c + d / 4.0 + math.sqrt(2.0 * math.log(1.0 / beta)) * (c + math.sqrt(d) / 2.0))
    return min(loose, tight)


@dataclass(frozen=True)
class NoisePlan:
    """What a round's devices and server agree on, in grid units (one unit = 2r / (2^b - 1))."""

    length: int  # L, the rotated vector's dimension
    value_range: float  # r
    per_level: float  # grid units per update unit: (2^b - 1) / 2r
    bound: float  # Delta: the rounded vector's L2 norm never exceeds it (the sensitivity)
    variance: float  # sigma^2 of each device's N_Z noise, an integer
    min_survivors: int  # the noise is calibrated for at least this many reports

    @property
    def sum_stddev(self) -> float:
        """The summed noise's standard deviation with ``min_survivors`` reports, in update units."""
        return math.sqrt(self.min_survivors * self.variance) / self.per_level


def plan(noise_multiplier: float, clip_norm: float, quant_bits: int, num_values: int,
         min_survivors: int) -> NoisePlan:
    """sigma for ``min_survivors`` devices: their summed noise has standard deviation
    noise_multiplier * Delta, the central Gaussian mechanism's z times the sensitivity."""
    if noise_multiplier <= 0 or clip_norm <= 0 or min_survivors < 1:
        raise ValueError("distributed DP needs a noise multiplier > 0, a clip > 0 and at least one survivor")
    length = ring.padded_length(num_values)
    vrange = ring.value_range(clip_norm, length)
    units = per_level(quant_bits, vrange)
    bound = rounding_bound(clip_norm * units, length)
    sigma = noise_multiplier * bound / math.sqrt(min_survivors)
    variance = float(max(1, math.ceil(sigma * sigma)))  # KLS assume sigma >= 1/2
    return NoisePlan(length, vrange, units, bound, variance, min_survivors)


def count_variance(count_stddev: float, min_survivors: int) -> float:
    """Adaptive clipping under distributed DP: each device's N_Z variance on its clip bit, so
    that ``min_survivors`` bits' noise has at least ``count_stddev`` (an integer, at least 1)."""
    if count_stddev <= 0 or min_survivors < 1:
        raise ValueError("the clip bits' noise needs a standard deviation > 0 and at least one survivor")
    return float(max(1, math.ceil(count_stddev * count_stddev / min_survivors)))


def encode_bit(bit: bool, modulus: int, noise: int) -> int:
    """A device's clip bit plus its noise, mod 2^modulus (the extra slot, masked like the rest)."""
    return (int(bit) + int(noise)) % (1 << modulus)


def decode_count(code_sum: int, n: int, modulus: int) -> float:
    """The noised count of devices below the clip from the unmasked extra slot: centred, then
    clamped to [0, n] (post-processing; a hostile ring element moves it by at most n)."""
    m = 1 << modulus
    signed = (int(code_sum) + m // 2) % m - m // 2
    return float(min(max(signed, 0), n))


def total_noise_multiplier(params, roster: int) -> float:
    """What a device can check of a round's distributed-DP noise without trusting the
    coordinator's ``min_reports``: the noise of all the round's devices together (at most
    the ``roster`` whose keys it received) in multiples of the sensitivity,
    sqrt(n sigma^2) / Delta, both in grid units. A device with a floor (`fedge device
    --min-dp-noise-multiplier`) refuses a round below it."""
    n = min(params.n, roster)
    return math.sqrt(n * params.dp_variance) / params.dp_bound if params.distributed_dp else 0.0


def check_noise_floor(params, roster: int, floor: float) -> None:
    """Refuses (ProtocolError ``dp_floor``) a round whose noise is below this device's floor."""
    if floor <= 0:
        return
    if not params.distributed_dp:
        raise ProtocolError(f"this device takes part only under distributed DP with a total noise multiplier of at "
                            f"least {floor:g}; the round adds no device noise", "dp_floor")
    z = total_noise_multiplier(params, roster)
    if z < floor:
        raise ProtocolError(f"the round's device noise adds up to {z:.3g} x the sensitivity over its {min(params.n, roster)} "
                            f"devices, below this device's floor of {floor:g}", "dp_floor")


def reach(n: int, quant_bits: int, variance: float) -> int:
    """The largest magnitude an honest sum of n devices reaches per coordinate (with
    NOISE_SIGMAS of noise): rounded codes are within +-2^(b-1)."""
    return n * (1 << (quant_bits - 1)) + math.ceil(NOISE_SIGMAS * math.sqrt(n * variance))


def modulus_bits(n: int, quant_bits: int, variance: float, count_variance: float = 0.0) -> int:
    """Room for n devices' codes and noise, and for their noised clip bits when they travel."""
    need = reach(n, quant_bits, variance)
    if count_variance:
        need = max(need, n + math.ceil(NOISE_SIGMAS * math.sqrt(n * count_variance)))
    bits = (2 * need + 1).bit_length()
    if bits > MAX_MODULUS_BITS:
        raise ProtocolError(f"distributed DP for {n} devices with noise variance {variance:g} needs {bits} modulus "
                            f"bits (at most {MAX_MODULUS_BITS}); lower secagg_bits", "bad_params")
    return bits


def round_epsilon(bound: float, variance: float, n: int, dim: int) -> float:
    """KLS theorem 1: the sum of n i.i.d. N_Z(0, variance) added to inputs that differ by at
    most ``bound`` in L2 (dimension ``dim``) is (1/2) eps^2-concentrated DP with this eps."""
    if n < 1 or variance <= 0:
        return math.inf
    k = np.arange(1, n, dtype=np.float64)
    tau = 10.0 * float(np.sum(np.exp(-2.0 * math.pi ** 2 * variance * k / (k + 1.0)))) if n > 1 else 0.0
    nv = n * variance
    return min(math.sqrt(bound * bound / nv + 2.0 * tau * dim), bound / math.sqrt(nv) + tau * math.sqrt(dim))


def exact_variance(variance: float) -> Fraction:
    v = Fraction(variance)
    if v.denominator != 1 or v < 1:
        raise ProtocolError(f"distributed DP's noise variance must be an integer >= 1, got {variance!r}", "bad_params")
    return v


def os_noise(variance: float) -> Callable[[int], np.ndarray]:
    """The device's noise: `length` exact N_Z(0, variance) draws from the OS CSPRNG (~2 us each)."""
    v = int(exact_variance(variance))
    return lambda length: discrete_gaussian.sample_many(v, length)


def encode(flat: np.ndarray, quant_bits: int, modulus: int, vrange: float, seed: int, bound: float,
           uniforms: Callable[[int], np.ndarray], noise: Callable[[int], np.ndarray]) -> np.ndarray:
    """Steps 2-5 for one device: its codes mod 2^modulus (uint32, length L).

    ``uniforms(L)`` gives each rounding attempt's draws in [0, 1); ``noise(L)`` the integer
    noise. The golden vectors record both, so another client reproduces the codes exactly.
    """
    length = ring.padded_length(np.asarray(flat).size)
    x = np.clip(ring.rotate(np.asarray(flat, np.float32), length, seed), -vrange, vrange).astype(np.float64)
    scaled = x * per_level(quant_bits, vrange)
    limit = math.floor(bound * bound)
    for _ in range(MAX_ROUNDING_TRIES):
        draws = np.asarray(uniforms(length), np.float64)
        if draws.shape != (length,):
            raise ValueError(f"need {length} rounding draws, got {draws.shape}")
        rounded = np.floor(scaled + draws).astype(np.int64)
        if int(np.dot(rounded, rounded)) <= limit:
            break
    else:
        raise ProtocolError(f"conditional rounding stayed above the bound {bound:g} in {MAX_ROUNDING_TRIES} tries",
                            "bad_params")
    noised = rounded + np.asarray(noise(length), np.int64)
    return np.mod(noised, 1 << modulus).astype(np.uint32)


def decode_sum(code_sum: np.ndarray, n: int, num_values: int, quant_bits: int, modulus: int, vrange: float,
               variance: float, seed: int) -> np.ndarray:
    """The noised float sum of n devices' updates from the unmasked sum of their codes mod
    2^modulus: centred (signed), clamped to what n honest devices reach, back to update units
    and rotated back."""
    m = 1 << modulus
    signed = np.mod(np.asarray(code_sum, np.int64) + m // 2, m) - m // 2
    limit = reach(n, quant_bits, variance)
    signed = np.clip(signed, -limit, limit)
    rotated = signed.astype(np.float64) * (2.0 * vrange / ((1 << quant_bits) - 1))
    return ring.unrotate(rotated.astype(np.float32), num_values, seed)
