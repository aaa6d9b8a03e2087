"""What a task's DP rounds (or asynchronous versions) spend, and when the budget stops it."""

from __future__ import annotations

from coordinator.aggregation.privacy import sampling_rate, task_epsilon
from coordinator.tasks.registry import Task


def dp_sampling_rate(task: Task) -> float:
    """goal / population, from the task's explicit dp_population only: a count of registered
    devices would let anyone lower the reported epsilon by registering more. Asynchronous
    versions claim no amplification by sampling (1.0): who reports is not a Poisson sample."""
    if task.config.asynchronous:
        return 1.0
    return sampling_rate(task.config.goal_count, task.config.dp_population)


def budget_stop(task: Task, done: int) -> str | None:
    """With dp_epsilon_budget: why the task must stop before one more round or version (None: it may go on)."""
    cfg = task.config
    if not (cfg.dp_on and cfg.dp_epsilon_budget > 0):
        return None
    q = dp_sampling_rate(task)
    after = task_epsilon(cfg, task.update_size, done + 1, q)
    if after <= cfg.dp_epsilon_budget:
        return None
    spent = task_epsilon(cfg, task.update_size, done, q)
    what = "version" if cfg.asynchronous else "round"
    return (f"privacy budget: one more {what} would spend epsilon {after:.3f} > budget {cfg.dp_epsilon_budget:g} "
            f"(delta {cfg.dp_delta:g}); stopped after {done} {what}s at epsilon {spent:.3f}")
