"""Federated data for emulated fleets; nothing is downloaded at run time.

- ``digits``: scikit-learn's 8x8 handwritten digits (shipped with the package), 64
  features scaled to [0, 1]; 20% held out (stratified, seeded) as the global test set.
  ``digits:xN``: the training part grown N-fold with shifted (at most one pixel each way),
  slightly noisy copies, for populations of 1,000 devices and more (1,437 images cannot give
  each a label-skewed shard); the held-out set stays the original images.
- ``synthetic:ALPHA,BETA``: the Synthetic(alpha, beta) benchmark of the FedProx paper
  (Li et al. 2020): per-device softmax-regression models and feature distributions,
  60 features, 10 classes; device sizes follow a lognormal.
- ``emnist:PATH``: federated EMNIST in TFF's h5 layout (``examples/<writer>/pixels``,
  ``examples/<writer>/label``); each writer is one device's shard.

Partitions of pooled data: ``iid``, ``dirichlet:ALPHA`` (label skew: each class is split
over devices by Dirichlet(ALPHA) proportions), ``writer`` (natural per-writer shards).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FederatedData:
    name: str
    shards: list[tuple[np.ndarray, np.ndarray]]  # one (x, y) per device
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int


def load_digits_pool(seed: int = 0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int32)
    return train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)


MAX_DIGITS_COPIES = 1000


def augment_digits(x: np.ndarray, y: np.ndarray, copies: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``copies`` x the images: the originals, then copies shifted by dx, dy in {-1, 0, 1}
    (zero-filled) with N(0, 0.05) pixel noise, clipped to [0, 1]. Up to x1,000 (1.4 million
    images, 368 MB): enough for about ten examples on each of 100,000 simulated devices."""
    if not 1 <= copies <= MAX_DIGITS_COPIES:
        raise ValueError(f"digits:xN needs N in [1, {MAX_DIGITS_COPIES}]")
    # One zero border around every image: a shift by (a, b) is the 8x8 window at (1-a, 1-b).
    padded = np.pad(x.reshape(-1, 8, 8), ((0, 0), (1, 1), (1, 1)))
    out_x, out_y = [x], [y]
    for _ in range(copies - 1):
        dx, dy = rng.integers(-1, 2, len(x)), rng.integers(-1, 2, len(x))
        shifted = np.empty((len(x), 8, 8), padded.dtype)
        for a in (-1, 0, 1):
            for b in (-1, 0, 1):
                which = (dx == a) & (dy == b)
                shifted[which] = padded[which, 1 - a:9 - a, 1 - b:9 - b]
        noisy = np.clip(shifted + rng.normal(0, 0.05, shifted.shape), 0.0, 1.0).astype(np.float32)
        out_x.append(noisy.reshape(len(x), -1))
        out_y.append(y)
    return np.concatenate(out_x), np.concatenate(out_y)


def partition_iid(y: np.ndarray, devices: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [np.sort(part) for part in np.array_split(rng.permutation(len(y)), devices)]


def partition_dirichlet(y: np.ndarray, devices: int, alpha: float, rng: np.random.Generator,
                        min_size: int = 2) -> list[np.ndarray]:
    """Label-skewed shards; redrawn until every device has at least ``min_size`` examples."""
    if alpha <= 0:
        raise ValueError("dirichlet alpha must be > 0")
    classes = np.unique(y)
    for _ in range(100):
        parts: list[list[int]] = [[] for _ in range(devices)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(y == c))
            cuts = (np.cumsum(rng.dirichlet(np.full(devices, alpha))) * len(idx)).astype(int)[:-1]
            for dev, chunk in enumerate(np.split(idx, cuts)):
                parts[dev].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [np.sort(np.array(p, dtype=np.int64)) for p in parts]
    raise ValueError(f"could not give all {devices} devices {min_size} examples; use fewer devices or larger alpha")


def partition_label_mix(y: np.ndarray, devices: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Equal-sized shards, each device's label mix drawn from Dirichlet(alpha) (Hsu et al.
    2019): the label skew of `partition_dirichlet` for populations too large for its per-class
    split (at 100,000 devices it cannot give every device two examples). A class asked for more
    examples than it has reuses its examples on other devices (a fraction of a per cent of a
    class at 100,000 devices: the demand is the sum of 100,000 draws)."""
    if alpha <= 0:
        raise ValueError("labelmix alpha must be > 0")
    classes = np.unique(y)
    sizes = np.array([len(part) for part in np.array_split(np.arange(len(y)), devices)])
    mix = rng.dirichlet(np.full(len(classes), alpha), devices)
    counts = rng.multinomial(sizes, mix)  # (devices, classes): how many of each label a device holds
    owners, examples = [], []
    for j, c in enumerate(classes):
        pool = rng.permutation(np.flatnonzero(y == c))
        owners.append(np.repeat(np.arange(devices), counts[:, j]))
        examples.append(np.resize(pool, counts[:, j].sum()))  # cycles through the pool if asked for more
    owner, example = np.concatenate(owners), np.concatenate(examples)
    order = np.argsort(owner, kind="stable")
    return [np.sort(part) for part in np.split(example[order], np.cumsum(sizes)[:-1])]


def partition(y: np.ndarray, devices: int, spec: str, rng: np.random.Generator) -> list[np.ndarray]:
    kind, _, arg = spec.partition(":")
    if kind == "iid":
        return partition_iid(y, devices, rng)
    if kind == "dirichlet":
        return partition_dirichlet(y, devices, float(arg or 0.5), rng)
    if kind == "labelmix":
        return partition_label_mix(y, devices, float(arg or 0.5), rng)
    raise ValueError(f"unknown partition {spec!r}; use iid, dirichlet:ALPHA or labelmix:ALPHA (writer for emnist)")


def synthetic(alpha: float, beta: float, devices: int, rng: np.random.Generator, dim: int = 60,
              classes: int = 10, test_fraction: float = 0.2) -> FederatedData:
    """Synthetic(alpha, beta) of Li et al. (FedProx): alpha controls how much the local
    models differ, beta how much the local feature distributions differ."""
    sizes = np.maximum(rng.lognormal(4, 2, devices).astype(int), 50)
    sizes = np.minimum(sizes, 2000)
    cov = np.diag(np.array([(j + 1) ** -1.2 for j in range(dim)]))
    shards, tests_x, tests_y = [], [], []
    for k in range(devices):
        u_k = rng.normal(0, alpha)
        b_k = rng.normal(0, beta)
        w = rng.normal(u_k, 1, (dim, classes))
        b = rng.normal(u_k, 1, classes)
        v_k = rng.normal(b_k, 1, dim)
        x = rng.multivariate_normal(v_k, cov, sizes[k]).astype(np.float32)
        y = np.argmax(x @ w + b, axis=1).astype(np.int32)
        n_test = max(1, int(len(x) * test_fraction))
        tests_x.append(x[:n_test])
        tests_y.append(y[:n_test])
        shards.append((x[n_test:], y[n_test:]))
    return FederatedData(f"synthetic({alpha},{beta})", shards, np.concatenate(tests_x), np.concatenate(tests_y),
                         classes)


def load_emnist_h5(path: str, max_writers: int | None = None, image_shape=(28, 28, 1)):
    """Per-writer (x, y) shards from a TFF-layout federated EMNIST h5 file."""
    import h5py

    shards = []
    with h5py.File(path, "r") as f:
        if "examples" not in f:
            raise ValueError(f"{path} is not in TFF's federated EMNIST layout (no 'examples' group)")
        for i, writer in enumerate(sorted(f["examples"])):
            if max_writers is not None and i >= max_writers:
                break
            group = f["examples"][writer]
            x = np.asarray(group["pixels"], np.float32).reshape(-1, *image_shape)
            y = np.asarray(group["label"], np.int32).reshape(-1)
            shards.append((x, y))
    if not shards:
        raise ValueError(f"{path} has no writers")
    return shards


def load_federated(dataset: str, devices: int, partition_spec: str, seed: int) -> FederatedData:
    rng = np.random.default_rng(seed)
    kind, _, arg = dataset.partition(":")
    if kind == "digits":
        x_tr, x_te, y_tr, y_te = load_digits_pool(seed)
        if arg:
            if not (arg.startswith("x") and arg[1:].isdigit()):
                raise ValueError(f"unknown dataset {dataset!r}; use digits or digits:xN (N-fold augmented)")
            x_tr, y_tr = augment_digits(x_tr, y_tr, int(arg[1:]), np.random.default_rng([seed, 7]))
        parts = partition(y_tr, devices, partition_spec, rng)
        return FederatedData(dataset, [(x_tr[p], y_tr[p]) for p in parts], x_te, y_te, 10)
    if kind == "synthetic":
        alpha, _, beta = (arg or "1,1").partition(",")
        return synthetic(float(alpha), float(beta or alpha), devices, rng)
    if kind == "emnist":
        shards = load_emnist_h5(arg, max_writers=devices)
        tests = [(x[: max(1, len(x) // 10)], y[: max(1, len(y) // 10)]) for x, y in shards]
        train = [(x[max(1, len(x) // 10):], y[max(1, len(y) // 10):]) for x, y in shards]
        return FederatedData("emnist", train, np.concatenate([t[0] for t in tests]),
                             np.concatenate([t[1] for t in tests]), 62)
    raise ValueError(f"unknown dataset {dataset!r}; use digits, digits:xN, synthetic:ALPHA,BETA or emnist:PATH")
