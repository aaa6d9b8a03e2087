"""Put a strided grid of values back where it came from in a (padded) NHWC tensor.

Pooling and depthwise-convolution gradients read window tap (i, j) of every output
as a strided slice of the padded input; their gradient writes it back with zero
insertion (RESHAPE + PAD) and an offset (PAD), all builtins.
"""

from __future__ import annotations

import tensorflow as tf


def zero_insert(t, strides: tuple[int, int]):
    """[n, h, w, c] -> [n, (h-1)*sh+1, (w-1)*sw+1, c] with the values on the stride grid.

    One axis at a time with 4-D tensors: TFLite's PAD takes at most 5 dimensions.
    """
    sh, sw = strides
    n, h, w, c = t.shape
    if sh > 1:
        t = tf.pad(tf.reshape(t, [n, h, 1, w * c]), [[0, 0], [0, 0], [0, sh - 1], [0, 0]])
        t = tf.reshape(t, [n, h * sh, w, c])[:, : (h - 1) * sh + 1]
    rows = t.shape[1]
    if sw > 1:
        t = tf.pad(tf.reshape(t, [n * rows, w, 1, c]), [[0, 0], [0, 0], [0, sw - 1], [0, 0]])
        t = tf.reshape(t, [n, rows, w * sw, c])[:, :, : (w - 1) * sw + 1]
    return t


def window_taps(x, window: tuple[int, int], out: tuple[int, int]) -> list[list]:
    """Non-overlapping windows (stride == window, no padding): taps[i][j] is element (i, j)
    of every window, [n, ho, wo, c]. RESHAPE + UNPACK + SPLIT move contiguous blocks,
    several times faster in TFLite than stride-kh STRIDED_SLICEs."""
    kh, kw = window
    ho, wo = out
    n, _, _, c = x.shape
    x = x[:, : ho * kh, : wo * kw, :]
    rows = tf.unstack(tf.reshape(x, [n * ho, kh, wo, kw * c]), axis=1)
    return [[tf.reshape(t, [n, ho, wo, c]) for t in tf.split(row, kw, axis=-1)] for row in rows]


def interleave(taps: list[list], size: tuple[int, int]):
    """The inverse of `window_taps`: write taps[i][j] back to element (i, j) of each window,
    zero where no window reaches (the bottom/right remainder of a VALID pooling)."""
    kh, kw = len(taps), len(taps[0])
    n, ho, wo, c = taps[0][0].shape
    rows = [tf.concat([tf.reshape(t, [n * ho, wo, c]) for t in row], axis=-1) for row in taps]
    full = tf.reshape(tf.stack(rows, axis=1), [n, ho * kh, wo * kw, c])
    if (ho * kh, wo * kw) == tuple(size):
        return full
    return tf.pad(full, [[0, 0], [0, size[0] - ho * kh], [0, size[1] - wo * kw], [0, 0]])


def place(t, top: int, left: int, strides: tuple[int, int], size: tuple[int, int]):
    """Scatter t[:, a, b] to [:, top + a*sh, left + b*sw] of a zero tensor of spatial `size`."""
    up = zero_insert(t, strides)
    _, h, w, _ = up.shape
    return tf.pad(up, [[0, 0], [top, size[0] - top - h], [left, size[1] - left - w], [0, 0]])


def tap(xp, top: int, left: int, strides: tuple[int, int], out: tuple[int, int]):
    """The strided slice of xp that window tap (top, left) reads for each of out[0] x out[1] outputs."""
    sh, sw = strides
    return xp[:, top : top + (out[0] - 1) * sh + 1 : sh, left : left + (out[1] - 1) * sw + 1 : sw, :]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after) for one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def paddings(op, x_shape, kernel: tuple[int, int], strides: tuple[int, int], dilations=(1, 1)):
    """((top, bottom), (left, right)) for a NHWC op with SAME / VALID / EXPLICIT padding."""
    from model_export.builtin_gradients._attrs import ints, text

    mode = text(op, "padding")
    if mode == "VALID":
        return (0, 0), (0, 0)
    if mode == "EXPLICIT":
        p = ints(op, "explicit_paddings")
        return (p[2], p[3]), (p[4], p[5])
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    return same_padding(x_shape[1], eff[0], strides[0]), same_padding(x_shape[2], eff[1], strides[1])
