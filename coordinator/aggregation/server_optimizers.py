"""Server optimizers: how a round's mean delta moves the global weights (the task's
`server_optimizer`), the second half of an aggregation strategy (`coordinator.aggregation.strategies`).

- ``fedavg``: w + lr * mean delta (lr 1 is McMahan et al.'s FedAvg).
- ``fedavgm``: server momentum, v = momentum * v + mean delta; w + lr * v (Hsu et al. 2019,
  "Measuring the Effects of Non-Identical Data Distribution"; FedBuff's server optimizer): it
  smooths label-skewed rounds and small asynchronous buffers over about 1 / (1 - momentum) of them.
- ``fedadam``: the mean delta as a pseudo-gradient for Adam on the server (Reddi et al.
  2021, "Adaptive Federated Optimization"); its moments are the state kept between rounds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from coordinator.tasks.config import ServerOptimizerConfig

OptimizerState = dict[str, np.ndarray]


class ServerOptimizer(ABC):
    @abstractmethod
    def apply(self, weights: np.ndarray, mean_delta: np.ndarray,
              state: OptimizerState) -> tuple[np.ndarray, OptimizerState]:
        """New global weights (flat float32) and the state for the next round."""


class ServerSGD(ServerOptimizer):
    def __init__(self, learning_rate: float):
        self.learning_rate = learning_rate

    def apply(self, weights, mean_delta, state):
        return (weights + self.learning_rate * mean_delta).astype(np.float32), state


class ServerMomentum(ServerOptimizer):
    def __init__(self, learning_rate: float, momentum: float):
        self.learning_rate, self.momentum = learning_rate, momentum

    def apply(self, weights, mean_delta, state):
        velocity = self.momentum * state.get("velocity", np.zeros_like(weights)) + mean_delta
        new = weights + self.learning_rate * velocity
        return new.astype(np.float32), {"velocity": velocity.astype(np.float32)}


class FedAdam(ServerOptimizer):
    def __init__(self, learning_rate: float, beta_1: float, beta_2: float, tau: float):
        self.learning_rate, self.beta_1, self.beta_2, self.tau = learning_rate, beta_1, beta_2, tau

    def apply(self, weights, mean_delta, state):
        m = state.get("m", np.zeros_like(weights))
        v = state.get("v", np.zeros_like(weights))
        m = self.beta_1 * m + (1.0 - self.beta_1) * mean_delta
        v = self.beta_2 * v + (1.0 - self.beta_2) * mean_delta * mean_delta
        new = weights + self.learning_rate * m / (np.sqrt(v) + self.tau)
        return new.astype(np.float32), {"m": m.astype(np.float32), "v": v.astype(np.float32)}


def make_server_optimizer(config: ServerOptimizerConfig) -> ServerOptimizer:
    if config.name == "fedavg":
        return ServerSGD(config.learning_rate)
    if config.name == "fedavgm":
        return ServerMomentum(config.learning_rate, config.momentum)
    if config.name == "fedadam":
        return FedAdam(config.learning_rate, config.beta_1, config.beta_2, config.tau)
    raise ValueError(f"unknown server optimizer {config.name!r}; use fedavg, fedavgm or fedadam")
