"""Whether local examples can train a model: one line naming both sides when they cannot
(a 60-feature dataset on a 64-input model otherwise fails inside the LiteRT interpreter,
"XNNPack delegate failed to reshape", after the device joined a round)."""

from __future__ import annotations

import numpy as np

from protocol.manifest import Manifest


def fit_problems(manifest: Manifest, x: np.ndarray, labels: np.ndarray) -> list[str]:
    """What keeps examples `x` (with their `labels`) from training `manifest`'s model; empty when they fit."""
    problems = []
    shape = tuple(np.shape(x)[1:])
    if shape != tuple(manifest.input.shape):
        problems.append(f"examples of shape {shape}, the model takes {tuple(manifest.input.shape)}")
    labels = np.asarray(labels).ravel()
    if manifest.task_kind == "classification" and labels.size:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= manifest.num_classes:
            problems.append(f"labels {low}..{high}, the model has {manifest.num_classes} classes")
    return problems


def check_data_fits(manifest: Manifest, data) -> None:
    """One line naming both sides when a fleet's data cannot train the model (a 60-feature
    dataset on a 64-input model ran 12 failed rounds before)."""
    labels = np.concatenate([np.asarray(s[1]).ravel() for s in data.shards] + [np.asarray(data.y_test).ravel()])
    problems = fit_problems(manifest, data.shards[0][0], labels)
    if problems:
        raise ValueError(f"dataset {data.name!r} does not fit model {manifest.model_name!r}: " + "; ".join(problems))
