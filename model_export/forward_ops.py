"""Forward ops with no TFLite builtin, re-expressed with builtins for one export.

- ``erf`` / ``erfc`` (Keras's exact GELU is ``0.5 * x * erfc(-x / sqrt 2)``): the
  Abramowitz-Stegun 7.1.26 rational approximation (|error| < 1.5e-7 exactly, < 5e-7 in float32, i.e. at float32's
  own resolution; its gradient follows by autodiff through builtins.
- Keras's dropout draws its mask with stateless random ops (no TFLite kernel); during
  the export it draws it with ``tf.random.uniform``, the RANDOM_UNIFORM builtin.

Like the gradient overrides, these are module attributes patched inside
`lowered_forward_ops()` and restored on exit.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager

import tensorflow as tf

_P = 0.3275911
_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def erf(x, name=None):
    t = 1.0 / (1.0 + _P * tf.abs(x))
    poly = t * (_A[0] + t * (_A[1] + t * (_A[2] + t * (_A[3] + t * _A[4]))))
    magnitude = 1.0 - poly * tf.exp(-x * x)
    return tf.where(x >= 0.0, magnitude, -magnitude)


def erfc(x, name=None):
    return 1.0 - erf(x)


def dropout(inputs, rate, noise_shape=None, seed=None):
    if rate == 0.0 or not _STOCHASTIC[-1]:
        return inputs
    if rate == 1.0:
        return tf.zeros_like(inputs)
    shape = inputs.shape if noise_shape is None else [d if d is not None else inputs.shape[i]
                                                      for i, d in enumerate(noise_shape)]
    keep = tf.cast(tf.random.uniform(shape) >= rate, inputs.dtype)
    return inputs * keep / (1.0 - rate)


@contextmanager
def dropout_disabled():
    """Every Keras dropout (Dropout layers, recurrent cells' masks) is the identity: the
    Keras side of the parity check."""
    from keras.src.backend.tensorflow import random as keras_tf_random

    with _patched(keras_tf_random, "dropout", lambda inputs, rate, noise_shape=None, seed=None: inputs):
        yield


@contextmanager
def _patched(owner, name: str, value):
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


# Whether dropout draws a mask (False for the deterministic parity build); a stack so
# nested scopes restore the outer setting.
_STOCHASTIC = [True]


@contextmanager
def lowered_forward_ops(stochastic: bool = True):
    from keras.src.backend.tensorflow import random as keras_tf_random
    from tensorflow.python.ops import math_ops

    with ExitStack() as stack:
        for owner in (math_ops, tf.math):
            stack.enter_context(_patched(owner, "erf", erf))
            stack.enter_context(_patched(owner, "erfc", erfc))
        stack.enter_context(_patched(keras_tf_random, "dropout", dropout))
        _STOCHASTIC.append(stochastic)
        try:
            yield
        finally:
            _STOCHASTIC.pop()
