"""Max and average pooling gradients (MaxPoolGrad and AvgPoolGrad have no TFLite kernel).

Both walk the window taps: tap (i, j) of every output is a strided slice of the padded
input, and its share of dy is written back with `placement.place`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from model_export.builtin_gradients._attrs import ints, static_shape, text
from model_export.builtin_gradients.placement import StridedTaps, interleave, paddings, scatter_taps, window_taps


def _geometry(op, x):
    if text(op, "data_format") != "NHWC":
        raise NotImplementedError(f"{op.type} with data_format {text(op, 'data_format')}")
    shape = static_shape(x, op.type)
    ksize = tuple(ints(op, "ksize")[1:3])
    strides = tuple(ints(op, "strides")[1:3])
    pads = paddings(op, shape, ksize, strides)
    return shape, ksize, strides, pads


def max_pool(op, dy):
    """Routes each output's gradient to the first maximum of its window, as TensorFlow does."""
    x, y = op.inputs[0], op.outputs[0]
    (n, h, w, c), (kh, kw), strides, ((pt, pb), (pl, pr)) = _geometry(op, x)
    lowest = np.finfo(np.float32).min
    xp = tf.pad(x, [[0, 0], [pt, pb], [pl, pr], [0, 0]], constant_values=lowest) if pt + pb + pl + pr else x
    size = (h + pt + pb, w + pl + pr)
    out = (y.shape[1], y.shape[2])
    disjoint = strides == (kh, kw) and pt + pb + pl + pr == 0
    if disjoint:
        taps = window_taps(xp, (kh, kw), out)
        window = lambda i, j: taps[i][j]  # noqa: E731
    else:
        walker = StridedTaps(xp, strides, out, fill=lowest)
        window = walker.tap
    taken = None
    shares = {}
    for i in range(kh):
        for j in range(kw):
            hit = tf.cast(tf.equal(window(i, j), y), dy.dtype)
            first = hit if taken is None else hit * (1.0 - taken)
            taken = first if taken is None else taken + first
            shares[i, j] = dy * first
    dxp = interleave(_grid(shares, kh, kw), size) if disjoint else walker.scatter(shares)
    return [dxp[:, pt : pt + h, pl : pl + w, :]]


def _grid(shares: dict, kh: int, kw: int) -> list[list]:
    return [[shares[i, j] for j in range(kw)] for i in range(kh)]


def avg_pool(op, dy):
    """Each output spreads dy / (its count of real, unpadded inputs) over its window."""
    x = op.inputs[0]
    (n, h, w, c), (kh, kw), (sh, sw), ((pt, pb), (pl, pr)) = _geometry(op, x)
    size = (h + pt + pb, w + pl + pr)
    ho, wo = dy.shape[1], dy.shape[2]
    real = np.zeros(size, np.float32)
    real[pt : pt + h, pl : pl + w] = 1.0
    counts = np.array([[real[a * sh : a * sh + kh, b * sw : b * sw + kw].sum() for b in range(wo)] for a in range(ho)])
    share = dy / tf.constant(counts.reshape(1, ho, wo, 1), dy.dtype)
    shares = {(i, j): share for i in range(kh) for j in range(kw)}
    if (sh, sw) == (kh, kw) and pt + pb + pl + pr == 0:
        dxp = interleave(_grid(shares, kh, kw), size)
    else:
        dxp = scatter_taps(shares, (sh, sw), (ho, wo), size)
    return [dxp[:, pt : pt + h, pl : pl + w, :]]
