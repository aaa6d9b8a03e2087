"""Activation gradients as elementwise builtins (ReluGrad, Relu6Grad, EluGrad, ...
have no TFLite kernel).

Each reads the same tensors TensorFlow's own gradient reads: the tape records only
those (``op.inputs`` or ``op.outputs`` is None otherwise).
"""

from __future__ import annotations

import tensorflow as tf


def relu(op, dy):
    return [dy * tf.cast(op.outputs[0] > 0.0, dy.dtype)]


def relu6(op, dy):
    # TensorFlow records only Relu6's output for its gradient (op.inputs is None here).
    y = op.outputs[0]
    return [dy * tf.cast(tf.logical_and(y > 0.0, y < 6.0), dy.dtype)]


def leaky_relu(op, dy):
    alpha = float(op.get_attr("alpha"))
    return [tf.where(op.inputs[0] > 0.0, dy, dy * alpha)]


def elu(op, dy):
    y = op.outputs[0]
    return [tf.where(y > 0.0, dy, dy * (y + 1.0))]


def selu(op, dy):
    # selu(x) = scale * x (x > 0), scale * alpha * (exp(x) - 1) otherwise.
    scale, alpha = 1.0507009873554805, 1.6732632423543772
    y = op.outputs[0]
    return [tf.where(y > 0.0, dy * scale, dy * (y + scale * alpha))]


def softplus(op, dy):
    return [dy * tf.sigmoid(op.inputs[0])]


def tanh(op, dy):
    y = op.outputs[0]
    return [dy * (1.0 - y * y)]


def sigmoid(op, dy):
    y = op.outputs[0]
    return [dy * y * (1.0 - y)]
