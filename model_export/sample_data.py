"""Random batches shaped like a model's inputs, for parity checks and benchmarks."""

from __future__ import annotations

import numpy as np

from model_export.sublayers import sublayers
from protocol.manifest import Manifest


def vocab_size(model) -> int | None:
    for layer in sublayers(model):
        if layer.__class__.__name__ == "Embedding":
            return int(layer.input_dim)
    return None


def random_labels(manifest: Manifest, rng: np.random.Generator) -> np.ndarray:
    shape = (manifest.batch_size, *manifest.label.shape)
    if manifest.task_kind == "classification":
        return rng.integers(0, manifest.num_classes, size=shape).astype(np.int32)
    if manifest.task_kind == "one_hot_classification":
        ids = rng.integers(0, manifest.label.shape[-1], size=shape[:-1])
        return np.eye(manifest.label.shape[-1], dtype=np.float32)[ids]
    if manifest.task_kind == "binary_classification":
        return rng.integers(0, 2, size=shape).astype(np.float32)
    return rng.normal(size=shape).astype(np.float32)


def random_batches(manifest: Manifest, steps: int, seed: int = 0, vocab: int | None = None):
    rng = np.random.default_rng(seed)
    b = manifest.batch_size
    for _ in range(steps):
        if manifest.input.dtype == "int32":
            x = rng.integers(0, vocab or 10, size=(b, *manifest.input.shape)).astype(np.int32)
        else:
            x = rng.normal(size=(b, *manifest.input.shape)).astype(np.float32)
        yield x, random_labels(manifest, rng)
