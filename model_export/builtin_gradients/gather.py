"""Embedding-style gathers: a dense table gradient as ONE_HOT^T @ dy.

TensorFlow's GatherV2 gradient is an IndexedSlices whose densification needs
UnsortedSegmentSum; a dense matmul is a builtin and, for on-device vocabularies,
as fast.
"""

from __future__ import annotations

import tensorflow as tf

from model_export.builtin_gradients._attrs import static_shape


def gather_v2(op, dy):
    params, indices, axis = op.inputs
    axis_value = tf.get_static_value(axis)
    if axis_value is None or int(axis_value) != 0 or int(op.get_attr("batch_dims")) != 0:
        raise NotImplementedError("GatherV2 gradient only for axis 0 and batch_dims 0")
    shape = static_shape(params, "gathered table")
    rows = shape[0]
    row_size = 1
    for d in shape[1:]:
        row_size *= d
    onehot = tf.one_hot(tf.reshape(indices, [-1]), rows, dtype=dy.dtype)
    grad = tf.matmul(onehot, tf.reshape(dy, [-1, row_size]), transpose_a=True)
    return [tf.reshape(grad, shape), None, None]
