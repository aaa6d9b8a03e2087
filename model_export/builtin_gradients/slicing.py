"""StridedSlice's gradient (StridedSliceGrad has no TFLite kernel).

With static shapes the slice is a fixed map from output to input positions, computed
once at export by slicing an index tensor the same way. A box of unit stride (``x[:, t]``,
``x[..., :8]``: what unrolled RNNs and Lambda layers do) scatters back with one PAD;
anything else with SCATTER_ND.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from model_export.builtin_gradients._attrs import static_shape

_MASKS = ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask")


def _index_map(op, shape: list[int]) -> np.ndarray:
    x, begin, end, strides = op.inputs
    bounds = [tf.get_static_value(t) for t in (begin, end, strides)]
    if any(b is None for b in bounds):
        raise NotImplementedError("StridedSlice with bounds computed at run time")
    masks = {name: int(op.get_attr(name)) for name in _MASKS}
    with tf.init_scope():  # eager, at export time
        positions = tf.reshape(tf.range(int(np.prod(shape)), dtype=tf.int64), shape)
        return tf.strided_slice(positions, *bounds, **masks).numpy()


def strided_slice(op, dy):
    shape = static_shape(op.inputs[0], "sliced tensor")
    picked = _index_map(op, shape).reshape(-1)
    if picked.size:
        coords = np.unravel_index(picked, shape)
        low = np.array([c.min() for c in coords])
        high = np.array([c.max() for c in coords])
        box = high - low + 1
        grid = np.meshgrid(*[np.arange(lo, hi + 1) for lo, hi in zip(low, high)], indexing="ij")
        if int(np.prod(box)) == picked.size and np.array_equal(np.ravel_multi_index(grid, shape).reshape(-1), picked):
            block = tf.reshape(dy, [int(b) for b in box])
            pads = [[int(lo), int(n - hi - 1)] for lo, hi, n in zip(low, high, shape)]
            return [tf.pad(block, pads), None, None, None]
    flat = tf.scatter_nd(tf.constant(picked.reshape(-1, 1), tf.int32), tf.reshape(dy, [-1]),
                         tf.constant([int(np.prod(shape))], tf.int32))
    return [tf.reshape(flat, shape), None, None, None]
