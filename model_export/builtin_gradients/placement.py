"""Window taps of NHWC window ops (pooling, depthwise convolution) and the way back.

Their gradients read tap (i, j) of every output (a strided slice of the padded input)
and write each tap's share back. LiteRT copies a stride-s STRIDED_SLICE element by
element, so taps go through RESHAPE / UNPACK / SPLIT: `window_taps` and `interleave` for
non-overlapping windows, `phase_split` / `phase_merge` (one per stride phase) otherwise.
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


def phase_split(x, strides: tuple[int, int], fill: float = 0.0) -> list[list]:
    """x[:, a::sh, b::sw, :] for every phase (a, b), by RESHAPE + UNPACK + SPLIT.

    x is first padded (with `fill`) to multiples of the strides, so every phase has
    ceil(h / sh) x ceil(w / sw) positions. A strided window tap is then a unit-stride
    slice of one phase, which LiteRT copies by rows instead of element by element.
    """
    sh, sw = strides
    n, h, w, c = x.shape
    hh, ww = -(-h // sh), -(-w // sw)
    if (hh * sh, ww * sw) != (h, w):
        x = tf.pad(x, [[0, 0], [0, hh * sh - h], [0, ww * sw - w], [0, 0]], constant_values=fill)
    rows = tf.unstack(tf.reshape(x, [n * hh, sh, ww, sw * c]), axis=1)
    return [[tf.reshape(t, [n, hh, ww, c]) for t in tf.split(row, sw, axis=-1)] for row in rows]


def phase_merge(phases: list[list], size: tuple[int, int]):
    """The inverse of `phase_split`, cropped to `size`."""
    sh, sw = len(phases), len(phases[0])
    n, hh, ww, c = phases[0][0].shape
    rows = [tf.concat([tf.reshape(t, [n * hh, ww, c]) for t in row], axis=-1) for row in phases]
    full = tf.reshape(tf.stack(rows, axis=1), [n, hh * sh, ww * sw, c])
    return full[:, : size[0], : size[1], :]


class StridedTaps:
    """The window taps of a strided window op over padded input xp.

    ``tap(i, j)`` is what tap (i, j) of every output reads ([n, ho, wo, c]). With
    strides > 1 it is a unit-stride slice of one stride phase.
    """

    def __init__(self, xp, strides: tuple[int, int], out: tuple[int, int], fill: float = 0.0):
        self.strides, self.out = strides, out
        self.size = (xp.shape[1], xp.shape[2])
        self.xp = xp
        self.phases = None if strides == (1, 1) else phase_split(xp, strides, fill)

    def tap(self, i: int, j: int):
        ho, wo = self.out
        if self.phases is None:
            return self.xp[:, i : i + ho, j : j + wo, :]
        sh, sw = self.strides
        p = self.phases[i % sh][j % sw]
        return p[:, i // sh : i // sh + ho, j // sw : j // sw + wo, :]

    def scatter(self, shares: dict):
        return scatter_taps(shares, self.strides, self.out, self.size)


def scatter_taps(shares: dict, strides: tuple[int, int], out: tuple[int, int], size: tuple[int, int]):
    """Sum {(i, j): share of tap (i, j)} back into a zero tensor of spatial `size`:
    a PAD per tap at the phase resolution, one `phase_merge` at full resolution."""
    ho, wo = out
    if strides == (1, 1):
        total = None
        for (i, j), share in shares.items():
            part = tf.pad(share, [[0, 0], [i, size[0] - i - ho], [j, size[1] - j - wo], [0, 0]])
            total = part if total is None else total + part
        return total
    sh, sw = strides
    first = shares[next(iter(shares))]
    n, c = first.shape[0], first.shape[-1]
    hh, ww = -(-size[0] // sh), -(-size[1] // sw)
    grids = [[None] * sw for _ in range(sh)]
    for (i, j), share in shares.items():
        top, left = i // sh, j // sw
        part = tf.pad(share, [[0, 0], [top, hh - top - ho], [left, ww - left - wo], [0, 0]])
        g = grids[i % sh][j % sw]
        grids[i % sh][j % sw] = part if g is None else g + part
    zeros = tf.zeros([n, hh, ww, c], first.dtype)
    return phase_merge([[g if g is not None else zeros for g in row] for row in grids], size)


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
