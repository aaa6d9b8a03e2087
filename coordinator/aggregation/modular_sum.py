"""The SecAgg modular sum: the masked inputs of a round, added as they arrive.

Once unmasked, the sum goes to the task's aggregation strategy (`coordinator.aggregation.strategies`)
as one `fold_sum`; plain updates are folded into the strategy one by one.
"""

from __future__ import annotations

import numpy as np


class ModularSum:
    """Running sum of SecAgg masked inputs, mod 2^k (uint64 cannot overflow before 2^32 inputs)."""

    def __init__(self, size: int):
        self.total = np.zeros(size, np.uint64)
        self.count = 0

    def add(self, values: np.ndarray) -> None:
        self.total += values
        self.count += 1
