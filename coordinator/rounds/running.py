"""The open rounds' running aggregates: one folded strategy per (task, round), in memory,
rebuilt from the stored updates after a restart. The gateway folds each accepted update
into it; the round driver finalizes and discards it.
"""

from __future__ import annotations

import numpy as np

from coordinator.aggregation.strategies import Strategy, make_strategy
from coordinator.tasks.registry import Task
from protocol import dp


class RunningRounds:
    def __init__(self):
        self.sums: dict[tuple[str, int], Strategy] = {}

    def sum_for(self, task: Task, round_num: int) -> Strategy:
        key = (task.task_id, round_num)
        if key not in self.sums:
            self.sums[key] = make_strategy(task.config, task.update_size)
        return self.sums[key]

    def discard(self, task_id: str, round_num: int) -> None:
        self.sums.pop((task_id, round_num), None)

    @staticmethod
    def server_bound(task: Task) -> float:
        """The L2 norm every decoded update is clipped to, whatever the device says: the round's
        DP clip (so the sensitivity behind epsilon holds), else the task's max_update_norm."""
        return task.dp_clip if task.config.dp_on else task.config.max_update_norm

    def fold(self, task: Task, acc: Strategy, values: np.ndarray, examples: int, norm: float | None = None,
             staleness: int | None = None) -> None:
        """Bound one decoded update (of L2 norm ``norm``, when known) and fold it; an
        asynchronous update is scaled by its staleness weight (<= 1, after the clip, so the
        bound holds): the buffer's mean is FedBuff's sum_k n_k w(s_k) delta_k / sum_k n_k."""
        bounded, _ = dp.clip_l2(values, self.server_bound(task), norm)
        if staleness is not None:
            weight = task.config.staleness_weighting(staleness)
            if weight != 1.0:
                bounded = bounded * np.float32(weight) if bounded.dtype == np.float32 else bounded * weight
        # Under DP every device weighs the same: one device's influence is bounded by the clip alone.
        weight = 1.0 if task.config.dp_on else float(min(examples, task.config.max_example_count))
        acc.fold(bounded, weight)
