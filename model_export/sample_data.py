"""Random batches shaped like a model's inputs, for parity checks and benchmarks."""

from __future__ import annotations

import numpy as np

from protocol.manifest import Manifest


def vocab_size(model) -> int | None:
    for layer in model.layers:
        if layer.__class__.__name__ == "Embedding":
            return int(layer.input_dim)
    return None


def random_batches(manifest: Manifest, steps: int, seed: int = 0, vocab: int | None = None):
    rng = np.random.default_rng(seed)
    b = manifest.batch_size
    for _ in range(steps):
        if manifest.input.dtype == "int32":
            x = rng.integers(0, vocab or 10, size=(b, *manifest.input.shape)).astype(np.int32)
        else:
            x = rng.normal(size=(b, *manifest.input.shape)).astype(np.float32)
        if manifest.task_kind == "classification":
            y = rng.integers(0, manifest.num_classes, size=(b,)).astype(np.int32)
        else:
            y = rng.normal(size=(b, *manifest.label.shape)).astype(np.float32)
        yield x, y
