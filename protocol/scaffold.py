"""SCAFFOLD's device-side rule (Karimireddy et al., ICML 2020, algorithm 1, option II), pure,
so that both device runtimes compute it the same way (golden vectors in protocol/golden/
scaffold.json, checked by the Java core).

After K local steps of learning rate lr from the global weights x to y, with the server's
control variate c and the device's c_i: c_i+ = c_i - c + (x - y) / (K lr), K counted as the
plain-SGD steps the exported optimizer's momentum makes them (``effective_steps``). The update
is the model delta y - x followed by the control delta c_i+ - c_i, in float32.
"""

from __future__ import annotations

import numpy as np


def effective_steps(steps: int, momentum: float = 0.0, nesterov: bool = False) -> float:
    """How many plain-SGD steps of the same learning rate ``steps`` steps of heavy-ball momentum
    move a weight under a constant gradient, from zero velocity (every round starts there):
    sum over k of (1 - m^k) / (1 - m), Nesterov's (1 - m^(k+1)) / (1 - m); ``steps`` without
    momentum. Option II divides the round's displacement by this times the learning rate: with
    the zoo's momentum 0.9, K = 15 steps move like 78, and dividing by K made every c_i about
    5x too large (SCAFFOLD diverged at f32 and q8 alike). A loop of double operations in a
    fixed order, so the Java core computes the same value to the bit."""
    if not momentum:
        return float(max(steps, 0))
    velocity = total = 0.0
    for _ in range(max(steps, 0)):
        velocity = momentum * velocity + 1.0
        total += momentum * velocity + 1.0 if nesterov else velocity
    return total


def next_control(c: np.ndarray, c_i: np.ndarray, delta: np.ndarray, steps: int, learning_rate: float,
                 momentum: float = 0.0, nesterov: bool = False) -> np.ndarray:
    """c_i+ from the model delta ``delta`` = y - x; c_i itself when no step was taken."""
    scale = np.float32(effective_steps(steps, momentum, nesterov)) * np.float32(learning_rate)
    c, c_i, delta = (np.asarray(a, np.float32) for a in (c, c_i, delta))
    if not scale > 0:
        return c_i.copy()
    return (c_i - c - delta / scale).astype(np.float32)


def update_vector(delta: np.ndarray, c_i: np.ndarray, c_next: np.ndarray) -> np.ndarray:
    """What a SCAFFOLD device uploads: the model delta, then the control delta."""
    return np.concatenate([np.asarray(delta, np.float32), (np.asarray(c_next, np.float32)
                                                           - np.asarray(c_i, np.float32))]).astype(np.float32)


def after_sent(c_i: np.ndarray, sent: np.ndarray) -> np.ndarray:
    """The c_i a device keeps once its upload is acknowledged: c_i plus the control delta as the
    coordinator decodes it (``sent``: the decoded update, control delta last). With a quantizing
    codec the server folds c_i+ - c_i with its rounding error; keeping the unrounded c_i+ would
    let c drift from the mean of the c_i, a random walk of those errors that diverged a q8 run."""
    c_i = np.asarray(c_i, np.float32)
    tail = np.asarray(sent, np.float32)[-c_i.size:] if c_i.size else np.zeros(0, np.float32)
    return (c_i + tail).astype(np.float32)
