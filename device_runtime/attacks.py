"""Byzantine devices for emulated fleets: what a malicious phone could send (bench/robustness.py).

- ``sign_flip``: the honest delta, negated and scaled x10 (model poisoning).
- ``constant``: every coordinate the same large value, whatever was learned.
- ``label_flip``: trains honestly, on labels y -> C - 1 - y (data poisoning).

A malicious device does not clip its update: the coordinator's bounds are what stand in its way.
"""

from __future__ import annotations

import numpy as np

ATTACKS = ("sign_flip", "constant", "label_flip")
SIGN_FLIP_SCALE = 10.0
CONSTANT_VALUE = 100.0


def check_attack(attack: str) -> str:
    if attack and attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; use one of {', '.join(ATTACKS)}")
    return attack


def poison_delta(attack: str, delta: np.ndarray) -> np.ndarray:
    if attack == "sign_flip":
        return (-SIGN_FLIP_SCALE * delta).astype(np.float32)
    if attack == "constant":
        return np.full_like(delta, CONSTANT_VALUE, dtype=np.float32)
    return delta


def poison_labels(attack: str, y: np.ndarray, num_classes: int) -> np.ndarray:
    return (num_classes - 1 - y).astype(y.dtype) if attack == "label_flip" else y
