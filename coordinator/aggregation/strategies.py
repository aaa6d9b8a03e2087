"""Aggregation strategies: the one interface the round driver sees. A strategy folds each
accepted update of a round (`fold`, or `fold_sum` for a sum secure aggregation revealed)
and finalizes the round (`finalize`: the global weights and optimizer state after it).

- `Federated`: a reducer (`coordinator.aggregation.reducers`: FedAvg's weighted mean or a robust one)
  and a server optimizer (`coordinator.aggregation.server_optimizers`: FedAvg's step or FedAdam).
- `DifferentiallyPrivate`: wraps a `Federated` over the weighted sum (DP-FedAvg, McMahan
  et al. 2018, "Learning differentially private recurrent language models"): Gaussian noise
  on the sum of clipped updates, a fixed denominator, the adaptive clip (Andrew et al. 2021)
  and the epsilon spent so far, then the inner server optimizer on the noised mean.

New ways to aggregate (FedProx's server side, buffered asynchronous aggregation) are new
strategies here, not branches in the commit. `make_strategy` picks one from a task config.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from coordinator.aggregation.privacy import epsilon, task_epsilon
from coordinator.aggregation.reducers import NothingToAggregate, Reducer, WeightedSum, make_reducer
from coordinator.aggregation.server_optimizers import OptimizerState, ServerOptimizer, make_server_optimizer
from protocol import dp

if TYPE_CHECKING:
    from coordinator.tasks.config import TaskConfig


@dataclass(frozen=True)
class RoundContext:
    """What finalizing a round may need beyond its updates (read from the store beforehand)."""
    committed_rounds: int = 0  # before this round
    sampling_rate: float = 1.0  # goal / population, for epsilon
    clip: float = 0.0  # this round's DP clip
    clip_bits: float | None = None  # with adaptive clipping: how many updates were below the clip


@dataclass(frozen=True)
class Finalized:
    weights: np.ndarray  # the new global weights, flat float32
    optimizer_state: OptimizerState
    metrics: dict = field(default_factory=dict)  # what the round's record shows (DP's noise, epsilon)


class Strategy(ABC):
    @property
    @abstractmethod
    def count(self) -> int:
        """Updates folded so far."""

    @abstractmethod
    def fold(self, delta: np.ndarray, weight: float) -> None:
        """One accepted, already bounded update (flat float32) and its weight."""

    @abstractmethod
    def fold_sum(self, total: np.ndarray, weight: float, count: int) -> None:
        """A sum of ``count`` updates whose parts stay hidden (secure aggregation)."""

    @abstractmethod
    def finalize(self, weights: np.ndarray, state: OptimizerState, ctx: RoundContext) -> Finalized:
        """The round's result; raises NothingToAggregate when nothing was folded."""

    @abstractmethod
    def step(self, weights: np.ndarray, mean: np.ndarray, state: OptimizerState) -> Finalized:
        """The server's step from a mean update (which DP may have noised first)."""


class Federated(Strategy):
    def __init__(self, reducer: Reducer, optimizer: ServerOptimizer):
        self.reducer, self.optimizer = reducer, optimizer

    @property
    def count(self) -> int:
        return self.reducer.count

    def fold(self, delta, weight):
        self.reducer.fold(delta, weight)

    def fold_sum(self, total, weight, count):
        if not isinstance(self.reducer, WeightedSum):
            raise TypeError("only the weighted sum can take a sum of hidden updates")
        self.reducer.fold_sum(total, weight, count)

    def finalize(self, weights, state, ctx):
        return self.step(weights, self.reducer.mean(), state)

    def step(self, weights, mean, state):
        new, new_state = self.optimizer.apply(weights, mean, state)
        return Finalized(new, new_state)


class _Around(Strategy):
    """A strategy that folds into ``inner`` (a `Federated`, or another `_Around`) and changes
    only how the round is finalized."""

    def __init__(self, inner: Strategy, config: TaskConfig):
        self.inner, self.config = inner, config

    @property
    def reducer(self) -> Reducer:
        return self.inner.reducer

    @property
    def count(self) -> int:
        return self.inner.count

    def fold(self, delta, weight):
        self.inner.fold(delta, weight)

    def fold_sum(self, total, weight, count):
        self.inner.fold_sum(total, weight, count)

    def step(self, weights, mean, state):
        return self.inner.step(weights, mean, state)


class DifferentiallyPrivate(_Around):
    """DP-FedAvg around ``inner``; every folded update must already be clipped to the round's
    clip with weight 1 (the gateway does both), so one device moves the sum by <= clip."""

    def __init__(self, inner: Strategy, config: TaskConfig):
        if not isinstance(inner.reducer, WeightedSum):
            raise TypeError("differential privacy needs the weighted sum (a bounded-sensitivity query)")
        super().__init__(inner, config)

    def finalize(self, weights, state, ctx):
        cfg, weighted_sum = self.config, self.reducer
        if weighted_sum.count == 0:
            raise NothingToAggregate("no updates to aggregate")
        rng = np.random.default_rng()  # fresh OS entropy: the noise must not be reproducible
        z_update = (dp.update_noise_multiplier(cfg.dp_noise_multiplier, cfg.clipped_count_stddev)
                    if cfg.adaptive_clip else cfg.dp_noise_multiplier)
        noisy = weighted_sum.total + dp.gaussian(weighted_sum.total.size, z_update * ctx.clip, rng)
        metrics = {"dp_clip": ctx.clip, "dp_noise_stddev": z_update * ctx.clip}
        if cfg.adaptive_clip:
            noisy_bits = (ctx.clip_bits or 0.0) + float(dp.gaussian(1, cfg.clipped_count_stddev, rng)[0])
            below = noisy_bits / cfg.goal_count
            metrics.update(dp_below_clip=below, dp_next_clip=dp.next_clip(
                ctx.clip, below, cfg.dp_target_quantile, cfg.dp_clip_learning_rate))
        metrics.update(epsilon=epsilon(cfg.dp_noise_multiplier, ctx.sampling_rate, ctx.committed_rounds + 1,
                                       cfg.dp_delta),
                       dp_sampling_rate=ctx.sampling_rate)
        # The fixed denominator (the expected count, not the noisy or actual one) keeps the
        # sensitivity of the mean at clip / goal_count (asynchronous: clip / buffer_size).
        mean = (noisy / cfg.dp_denominator).astype(np.float32)
        out = self.inner.step(weights, mean, state)  # with SCAFFOLD: the noised mean moves weights and c
        return Finalized(out.weights, out.optimizer_state, {**out.metrics, **metrics})


class DistributedlyPrivate(_Around):
    """Distributed DP around ``inner``: the devices noised their codes before masking them
    (protocol.secagg.distributed_dp), so the unmasked sum carries the noise and nothing is
    added here; the round records the noise and the epsilon spent (task_epsilon)."""

    def __init__(self, inner: Strategy, config: TaskConfig, size: int):
        super().__init__(inner, config)
        self.size = size

    def finalize(self, weights, state, ctx):
        from protocol.secagg import distributed_dp as ddp

        cfg = self.config
        out = self.inner.finalize(weights, state, ctx)
        clip = ctx.clip or cfg.clip_norm  # the round's (adaptive clipping moves it)
        noise = ddp.plan(cfg.dp_noise_multiplier, clip, cfg.secagg_bits, self.size, cfg.dp_noise_reporters)
        out.metrics.update(dp_clip=clip, dp_noise_stddev=noise.sum_stddev, dp_device_variance=noise.variance,
                           epsilon=task_epsilon(cfg, self.size, ctx.committed_rounds + 1, ctx.sampling_rate))
        if cfg.adaptive_clip and ctx.clip_bits is not None:
            # The bits' sum was noised on the devices (each bit with its own N_Z share) and
            # clamped to [0, n] when unmasked: the clip follows it as in central DP.
            below = ctx.clip_bits / cfg.goal_count
            out.metrics.update(dp_below_clip=below, dp_next_clip=dp.next_clip(
                clip, below, cfg.dp_target_quantile, cfg.dp_clip_learning_rate))
        return out


class Scaffold(_Around):
    """SCAFFOLD's server step around FedAvg: each update is the model delta followed by the
    control delta; finalize takes weights followed by the control variate c and returns
    both moved: the weights by the server optimizer on the mean model delta, c by
    (reports / scaffold_population) x the mean control delta (Karimireddy et al., alg. 1).
    Under DP the concatenation is what devices clip and what gets the noise, so the released
    pair (weights, c) is private as one query."""

    def finalize(self, weights, state, ctx):
        return self.step(weights, self.reducer.mean(), state)

    def step(self, weights, mean, state):
        n = weights.size // 2
        moved = self.inner.step(weights[:n], mean[:n], state)
        new, new_state = moved.weights, moved.optimizer_state
        share = self.count / self.config.scaffold_population if self.config.scaffold_population else 1.0
        control = weights[n:] + min(share, 1.0) * mean[n:]
        return Finalized(np.concatenate([new, control]), new_state,
                         {"control_norm": float(np.linalg.norm(control))})


def make_strategy(config: TaskConfig, size: int) -> Strategy:
    """The task's strategy for one round of a model with ``size`` parameters (for SCAFFOLD,
    ``size`` counts the model and the control variate)."""
    reducer = make_reducer(config.aggregator, size, config.trim_fraction, config.krum_byzantine, config.krum_select)
    strategy: Strategy = Federated(reducer, make_server_optimizer(config.server_optimizer))
    if config.scaffold:
        strategy = Scaffold(strategy, config)
    if config.distributed_dp:
        return DistributedlyPrivate(strategy, config, size)
    return DifferentiallyPrivate(strategy, config) if config.dp_on else strategy
