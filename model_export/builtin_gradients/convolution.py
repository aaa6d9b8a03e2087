"""Convolution gradients as CONV_2D / DEPTHWISE_CONV_2D / TRANSPOSE_CONV builtins.

Conv2DBackpropFilter and both depthwise backprops have no TFLite kernel. The filter
gradient of a convolution is itself a convolution once the batch axis plays the
role of the channels: with xp the padded input and dy the output gradient,

    dK[i, j, ci, co] = sum_{n, a, b} xp[n, a*s + i*d, b*s + j*d, ci] * dy[n, a, b, co]

which is CONV_2D of xp^T ([ci, H, W, n]) with dy^T ([ho, wo, n, co]) as the filter,
dilated by the forward stride: one builtin op instead of kh*kw matmuls.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.python.ops import gen_nn_ops

from model_export.builtin_gradients._attrs import ints, static_shape, text
from model_export.builtin_gradients.matmul import batch_matmul
from model_export.builtin_gradients.placement import StridedTaps, paddings, tap, zero_insert


def _check_nhwc(op):
    if text(op, "data_format") != "NHWC":
        raise NotImplementedError(f"{op.type} with data_format {text(op, 'data_format')}")


def _pad(x, pads):
    (pt, pb), (pl, pr) = pads
    if pt == pb == pl == pr == 0:
        return x
    return tf.pad(x, [[0, 0], [pt, pb], [pl, pr], [0, 0]])


def conv2d_filter_gradient(x, dy, kernel_hw, strides, dilations, pads):
    kh, kw = kernel_hw
    sh, sw = strides
    dh, dw = dilations
    xp = _pad(x, pads)
    n, _, _, cin = xp.shape
    _, ho, wo, cout = dy.shape
    if kh == kw == 1:
        patch = tap(xp, 0, 0, strides, (ho, wo))
        dk = tf.matmul(tf.reshape(patch, [n * ho * wo, cin]), tf.reshape(dy, [n * ho * wo, cout]), transpose_a=True)
        return tf.reshape(dk, [1, 1, cin, cout])
    # Crop rows/columns the forward pass never read, so the output is exactly the taps.
    xp = xp[:, : (ho - 1) * sh + (kh - 1) * dh + 1, : (wo - 1) * sw + (kw - 1) * dw + 1, :]
    images = tf.transpose(xp, [3, 1, 2, 0])  # [cin, H, W, n]
    filters = tf.transpose(dy, [1, 2, 0, 3])  # [ho, wo, n, cout]
    # Measured in LiteRT (bench/export_bench.py, emnist_cnn): the single CONV_2D wins when
    # few input channels make its output tiny (1 channel: 0.8 vs 4.0 ms for the taps); with
    # 8+ channels and unit strides (contiguous slices) kh*kw matmuls win (1.4 vs 2.4 ms).
    if (dh, dw) == (1, 1) and (cin < 8 or (sh, sw) != (1, 1)):
        out = tf.nn.conv2d(images, filters, strides=1, padding="VALID", dilations=[sh, sw])
        return tf.transpose(out, [1, 2, 0, 3])  # [kh, kw, cin, cout]
    taps = [
        tf.matmul(tf.reshape(tap(xp, i * dh, j * dw, strides, (ho, wo)), [n * ho * wo, cin]),
                  tf.reshape(dy, [n * ho * wo, cout]), transpose_a=True)
        for i in range(kh)
        for j in range(kw)
    ]
    return tf.reshape(tf.stack(taps), [kh, kw, cin, cout])


def dilate_kernel(kernel, dilations: tuple[int, int]):
    """[kh, kw, ci, co] -> [(kh-1)*dh+1, (kw-1)*dw+1, ci, co] with zeros between the taps.

    A convolution with dilation d equals one with the dilated kernel and dilation 1, the
    form every TensorFlow CPU kernel and TRANSPOSE_CONV support (TensorFlow's plain
    Conv2DBackpropInput refuses dilations > 1 where oneDNN is off, e.g. by default on AMD).
    Rank-3/4 RESHAPE, PAD and slices only.
    """
    dh, dw = dilations
    kh, kw, ci, co = (int(d) for d in kernel.shape)
    k = kernel
    if dh > 1:
        k = tf.pad(tf.reshape(k, [kh, 1, kw * ci * co]), [[0, 0], [0, dh - 1], [0, 0]])
        k = tf.reshape(k, [kh * dh, kw, ci, co])[: (kh - 1) * dh + 1]
    eh = int(k.shape[0])
    if dw > 1:
        k = tf.pad(tf.reshape(k, [eh, kw, 1, ci * co]), [[0, 0], [0, 0], [0, dw - 1], [0, 0]])
        k = tf.reshape(k, [eh, kw * dw, ci, co])[:, : (kw - 1) * dw + 1]
    return k


def conv2d(op, dy):
    _check_nhwc(op)
    x, kernel = op.inputs
    x_shape = static_shape(x, "Conv2D input")
    kh, kw, k_in, _ = static_shape(kernel, "Conv2D filter")
    if k_in != x_shape[-1]:
        raise NotImplementedError("grouped Conv2D (groups > 1)")
    strides = tuple(ints(op, "strides")[1:3])
    dilations = tuple(ints(op, "dilations")[1:3]) or (1, 1)
    pads = paddings(op, x_shape, (kh, kw), strides, dilations)
    dk = conv2d_filter_gradient(x, dy, (kh, kw), strides, dilations, pads)
    if (kh, kw) == (1, 1) and strides == (1, 1):
        # Pointwise: the input gradient is dy @ K^T, a BATCH_MATMUL (TRANSPOSE_CONV is slower).
        n, h, w, cin = x_shape
        cout = dy.shape[-1]
        flat = batch_matmul(tf.reshape(dy, [n * h * w, cout]), tf.reshape(kernel, [cin, cout]), False, True)
        return [tf.reshape(flat, x_shape), dk]
    # The input gradient is Conv2DBackpropInput, which the converter lowers to TRANSPOSE_CONV
    # (no dilation there: a dilated kernel instead; SAME pads by the same effective size).
    dx = gen_nn_ops.conv2d_backprop_input(
        input_sizes=tf.constant(x_shape, tf.int32), filter=dilate_kernel(kernel, dilations), out_backprop=dy,
        strides=op.get_attr("strides"), padding=op.get_attr("padding"),
        explicit_paddings=op.get_attr("explicit_paddings"), data_format="NHWC",
    )
    return [dx, dk]


def depthwise_conv2d(op, dy):
    """DepthwiseConv2dNative: x [n,h,w,c], filter [kh,kw,c,m], output [n,ho,wo,c*m]."""
    _check_nhwc(op)
    x, kernel = op.inputs
    n, h, w, c = static_shape(x, "DepthwiseConv2D input")
    kh, kw, _, m = static_shape(kernel, "DepthwiseConv2D filter")
    strides = tuple(ints(op, "strides")[1:3])
    dilations = tuple(ints(op, "dilations")[1:3]) or (1, 1)
    if dilations != (1, 1):
        raise NotImplementedError("dilated DepthwiseConv2D")
    (pt, pb), (pl, pr) = pads = paddings(op, [n, h, w, c], (kh, kw), strides)
    _, ho, wo, _ = dy.shape
    hp, wp = h + pt + pb, w + pl + pr

    # Filter: one multiply-and-sum per tap over the matching strided slice of the input.
    walker = StridedTaps(_pad(x, pads), strides, (ho, wo))
    dy5 = tf.reshape(dy, [n, ho, wo, c, m])
    taps = [tf.reduce_sum(tf.expand_dims(walker.tap(i, j), -1) * dy5, axis=[0, 1, 2])
            for i in range(kh) for j in range(kw)]
    dk = tf.reshape(tf.stack(taps), [kh, kw, c, m])

    # Input: a full correlation of the zero-inserted dy with the spatially flipped filter.
    up = zero_insert(dy, strides)
    uh, uw = up.shape[1], up.shape[2]
    up = tf.pad(up, [[0, 0], [kh - 1, hp - uh], [kw - 1, wp - uw], [0, 0]])
    flipped = tf.reshape(tf.reverse(kernel, axis=[0, 1]), [kh, kw, c * m, 1])
    dxp = tf.nn.depthwise_conv2d(up, flipped, strides=[1, 1, 1, 1], padding="VALID")
    if m > 1:
        dxp = tf.reduce_sum(tf.reshape(dxp, [n, hp, wp, c, m]), axis=-1)
    dx = dxp[:, pt : pt + h, pl : pl + w, :]
    return [dx, dk]


def conv2d_backprop_input(op, grad):
    """Conv2DTranspose's forward op: the transpose of Conv2D(out_backprop, filter).

    Its filter gradient is the Conv2D filter gradient with ``grad`` as the input and
    ``out_backprop`` as the output gradient; its input gradient is a plain Conv2D.
    """
    _check_nhwc(op)
    _, kernel, out_backprop = op.inputs
    grad_shape = static_shape(grad, "Conv2DTranspose output")
    kh, kw, _, _ = static_shape(kernel, "Conv2DTranspose filter")
    strides = tuple(ints(op, "strides")[1:3])
    dilations = tuple(ints(op, "dilations")[1:3]) or (1, 1)
    pads = paddings(op, grad_shape, (kh, kw), strides, dilations)
    dk = conv2d_filter_gradient(grad, out_backprop, (kh, kw), strides, dilations, pads)
    d_out = tf.nn.conv2d(grad, kernel, strides=op.get_attr("strides"), padding=text(op, "padding"),
                         dilations=op.get_attr("dilations"))
    return [None, dk, d_out]
