"""Trainable convolutions as im2col + MATMUL, for the export only.

In a train step a convolution's filter is a variable. LiteRT's XNNPACK delegate takes
convolutions with constant filters only, so a trainable CONV_2D runs on TFLite's
built-in kernel, while a matmul with a variable operand is delegated. Measured on one
core (batch 32, 14x14x16 -> 32, 3x3, the filter assigned every step): CONV_2D 2.29 ms,
the same convolution as pad + 9 slices + CONCATENATION + matmul 0.99 ms. The backward
pass follows by autodiff (the slices scatter back with PAD, `builtin_gradients.slicing`).

Frozen convolutions (``trainable=False``: a frozen base) keep their CONV_2D: their filter
is a constant the converter folds and XNNPACK runs. Strided, grouped, dilated and
channels_first convolutions, and thin ones (`MIN_FILTER_ROWS`), keep theirs too, as does
Conv1D (Keras's Conv1D.call does not go through ``convolution_op``).
"""

from __future__ import annotations

from contextlib import contextmanager

import tensorflow as tf

from model_export.builtin_gradients.placement import same_padding, tap


def conv2d_as_matmul(x, kernel, strides: tuple[int, int], pads: tuple[tuple[int, int], tuple[int, int]]):
    """NHWC convolution of x with kernel [kh, kw, cin, cout] as im2col + one matmul."""
    kh, kw, cin, cout = kernel.shape
    (pt, pb), (pl, pr) = pads
    if pt or pb or pl or pr:
        x = tf.pad(x, [[0, 0], [pt, pb], [pl, pr], [0, 0]])
    n, hp, wp, _ = x.shape
    ho, wo = (hp - kh) // strides[0] + 1, (wp - kw) // strides[1] + 1
    taps = [tap(x, i, j, strides, (ho, wo)) for i in range(kh) for j in range(kw)]
    # Column order (i, j, ci) is the filter's own memory order, so the filter only reshapes.
    cols = taps[0] if len(taps) == 1 else tf.concat(taps, axis=-1)
    y = tf.matmul(tf.reshape(cols, [n * ho * wo, kh * kw * cin]), tf.reshape(kernel, [kh * kw * cin, cout]))
    return tf.reshape(y, [n, ho, wo, cout])


def _pads(padding: str, size: tuple[int, int], kernel: tuple[int, int], strides: tuple[int, int]):
    if padding == "valid":
        return (0, 0), (0, 0)
    return same_padding(size[0], kernel[0], strides[0]), same_padding(size[1], kernel[1], strides[1])


# Below this many filter rows (kh * kw * cin) the matmul is too thin to beat CONV_2D:
# a 3x3 filter over 1 channel took 1.28 ms as im2col + matmul and 0.8 ms as CONV_2D.
MIN_FILTER_ROWS = 32


def _lowerable(layer, x) -> bool:
    rows = layer.kernel.shape[0] * layer.kernel.shape[1] * x.shape[-1] if layer.rank == 2 else 0
    # Strided convolutions keep CONV_2D: their taps would be stride-s slices, which LiteRT
    # copies element by element, and whose gradient is a scatter.
    pointwise = layer.rank == 2 and tuple(layer.kernel.shape[:2]) == (1, 1)  # no im2col: a reshape
    return (layer.rank == 2 and layer.trainable and (rows >= MIN_FILTER_ROWS or pointwise)
            and all(s == 1 for s in layer.strides)
            and layer.data_format == "channels_last"
            and all(d == 1 for d in layer.dilation_rate) and getattr(layer, "groups", 1) == 1
            and x.shape.is_fully_defined())


def _lowered(original):
    def convolution_op(self, inputs, kernel):
        x = tf.convert_to_tensor(inputs)
        if not _lowerable(self, x):
            return original(self, inputs, kernel)
        k = tf.convert_to_tensor(kernel)
        strides = tuple(self.strides)
        pads = _pads(self.padding, (x.shape[1], x.shape[2]), (k.shape[0], k.shape[1]), strides)
        return conv2d_as_matmul(x, k, strides, pads)

    return convolution_op


@contextmanager
def trainable_convolutions_as_matmul():
    from keras.src.layers.convolutional.base_conv import BaseConv

    original = BaseConv.convolution_op
    BaseConv.convolution_op = _lowered(original)
    try:
        yield
    finally:
        BaseConv.convolution_op = original
