"""The SecAgg modular sum and the server optimizers.

How plain updates are combined is an aggregation strategy (`coordinator.strategies`).
At commit the mean delta is applied to the global weights by the server optimizer
(FedAvg with a server learning rate, or FedAdam, Reddi et al. 2021, "Adaptive Federated Optimization").
"""

from __future__ import annotations

import numpy as np

from coordinator.task_config import ServerOptimizer


class ModularSum:
    """Running sum of SecAgg masked inputs, mod 2^k (uint64 cannot overflow before 2^32 inputs)."""

    def __init__(self, size: int):
        self.total = np.zeros(size, np.uint64)
        self.count = 0

    def add(self, values: np.ndarray) -> None:
        self.total += values
        self.count += 1


def apply_server_optimizer(weights: np.ndarray, mean_delta: np.ndarray, opt: ServerOptimizer,
                           state: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """New global weights (flat float32) and the optimizer's new state."""
    if opt.name == "fedavg":
        return (weights + opt.learning_rate * mean_delta).astype(np.float32), state
    m = state.get("m", np.zeros_like(weights))
    v = state.get("v", np.zeros_like(weights))
    m = opt.beta_1 * m + (1.0 - opt.beta_1) * mean_delta
    v = opt.beta_2 * v + (1.0 - opt.beta_2) * mean_delta * mean_delta
    new = weights + opt.learning_rate * m / (np.sqrt(v) + opt.tau)
    return new.astype(np.float32), {"m": m.astype(np.float32), "v": v.astype(np.float32)}
