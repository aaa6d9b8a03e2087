"""The on-device example store: plain `.npz` files, read without pickle.

Layout: a folder of ``*.npz`` files, each with arrays ``x`` (examples, shaped like the
model input without the batch axis) and ``y`` (labels). All files are concatenated;
a fixed fraction (default 20%), chosen by a seeded shuffle, is held out for local
evaluation and never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class LocalData:
    x_train: np.ndarray
    y_train: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray


def split_holdout(x: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> LocalData:
    order = np.random.default_rng(seed).permutation(len(x))
    n_eval = int(round(len(x) * fraction)) if len(x) > 1 else 0
    ev, tr = order[:n_eval], order[n_eval:]
    return LocalData(x[tr], y[tr], x[ev], y[ev])


def load_example_store(folder: str | Path, holdout: float = 0.2, seed: int = 0) -> LocalData:
    folder = Path(folder)
    files = sorted(folder.glob("*.npz"))
    if not files:
        raise FileNotFoundError(f"no .npz example files in {folder}")
    xs, ys = [], []
    for f in files:
        with np.load(f, allow_pickle=False) as data:
            if "x" not in data.files or "y" not in data.files:
                raise ValueError(f"{f} must hold arrays 'x' and 'y'")
            if len(data["x"]) != len(data["y"]):
                raise ValueError(f"{f}: x and y have different lengths")
            xs.append(data["x"])
            ys.append(data["y"])
    return split_holdout(np.concatenate(xs), np.concatenate(ys), holdout, seed)


def write_example_file(path: str | Path, x: np.ndarray, y: np.ndarray) -> None:
    np.savez(path, x=np.asarray(x), y=np.asarray(y))
