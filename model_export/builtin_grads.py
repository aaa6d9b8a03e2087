"""Differentiable ops whose gradients are made of TFLite *builtin* ops only.

TensorFlow's own gradients for these ops (ReluGrad, TanhGrad, SigmoidGrad,
Conv2DBackpropFilter, MaxPoolGrad, the fused BatchNorm and sparse-softmax grads,
gather's IndexedSlices) have no builtin TFLite kernel, so a train step using them
needs the Flex delegate, which the stock LiteRT runtime lacks. Each op here has a
``tf.custom_gradient`` written with matmuls, convolutions, slices and elementwise
math; tests compare every one with TensorFlow's gradient.
"""

from __future__ import annotations

import tensorflow as tf


@tf.custom_gradient
def relu(x):
    y = tf.maximum(x, 0.0)

    def grad(dy):
        return dy * tf.cast(x > 0.0, dy.dtype)

    return y, grad


@tf.custom_gradient
def tanh(x):
    y = tf.tanh(x)

    def grad(dy):
        return dy * (1.0 - y * y)

    return y, grad


@tf.custom_gradient
def sigmoid(x):
    y = tf.sigmoid(x)

    def grad(dy):
        return dy * y * (1.0 - y)

    return y, grad


def log_softmax(logits):
    # LogSoftmax's TF gradient is exp/sum/sub arithmetic: builtin already.
    return tf.nn.log_softmax(logits, axis=-1)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv2d(x, kernel, strides: tuple[int, int], padding: str):
    """NHWC convolution; the filter gradient is kh*kw matmuls of strided input slices."""
    sh, sw = strides
    kh, kw, cin, cout = kernel.shape

    @tf.custom_gradient
    def _conv(x, kernel):
        y = tf.nn.conv2d(x, kernel, strides=[1, sh, sw, 1], padding=padding)

        def grad(dy):
            n, h, w, _ = x.shape
            _, ho, wo, _ = dy.shape
            dx = tf.nn.conv2d_transpose(
                dy, kernel, output_shape=[n, h, w, cin], strides=[1, sh, sw, 1], padding=padding
            )
            if padding == "SAME":
                pt, pb = _same_padding(h, kh, sh)
                pl, pr = _same_padding(w, kw, sw)
                xp = tf.pad(x, [[0, 0], [pt, pb], [pl, pr], [0, 0]])
            else:
                xp = x
            dy_flat = tf.reshape(dy, [n * ho * wo, cout])
            taps = []
            for i in range(kh):
                for j in range(kw):
                    patch = xp[:, i : i + (ho - 1) * sh + 1 : sh, j : j + (wo - 1) * sw + 1 : sw, :]
                    taps.append(tf.matmul(tf.reshape(patch, [n * ho * wo, cin]), dy_flat, transpose_a=True))
            dk = tf.reshape(tf.stack(taps, axis=0), [kh, kw, cin, cout])
            return dx, dk

        return y, grad

    return _conv(x, kernel)


def max_pool2d(x, pool: tuple[int, int]):
    """Non-overlapping VALID max pooling (stride == pool size).

    The gradient routes dy to the window's maxima (split evenly between exact ties),
    found by comparing x with the nearest-neighbour upsampled output.
    """
    ph, pw = pool

    @tf.custom_gradient
    def _pool(x):
        y = tf.nn.max_pool2d(x, ksize=[1, ph, pw, 1], strides=[1, ph, pw, 1], padding="VALID")

        def grad(dy):
            n, h, w, c = x.shape
            _, ho, wo, _ = y.shape
            hc, wc = ho * ph, wo * pw
            xc = x[:, :hc, :wc, :]
            y_up = tf.image.resize(y, [hc, wc], method="nearest")
            dy_up = tf.image.resize(dy, [hc, wc], method="nearest")
            is_max = tf.cast(tf.equal(xc, y_up), dy.dtype)
            ties = tf.nn.avg_pool2d(is_max, ksize=[1, ph, pw, 1], strides=[1, ph, pw, 1], padding="VALID") * float(ph * pw)
            ties_up = tf.image.resize(ties, [hc, wc], method="nearest")
            dxc = is_max * dy_up / ties_up
            return tf.pad(dxc, [[0, 0], [0, h - hc], [0, w - wc], [0, 0]])

        return y, grad

    return _pool(x)


def batch_norm_train(x, gamma, beta, epsilon: float):
    """BatchNormalization in training mode over all axes but the last.

    Returns (y, batch_mean, batch_variance); the variance is the biased one, as Keras uses.
    The backward pass is the closed form of the BN gradient.
    """
    axes = list(range(len(x.shape) - 1))
    count = 1
    for d in x.shape[:-1]:
        count *= d

    @tf.custom_gradient
    def _bn(x, gamma, beta):
        mean = tf.reduce_mean(x, axis=axes)
        centered = x - mean
        var = tf.reduce_mean(centered * centered, axis=axes)
        inv = 1.0 / tf.sqrt(var + epsilon)
        xhat = centered * inv
        y = xhat * gamma + beta

        def grad(dy):
            dbeta = tf.reduce_sum(dy, axis=axes)
            dgamma = tf.reduce_sum(dy * xhat, axis=axes)
            dxhat = dy * gamma
            dx = (inv / count) * (
                count * dxhat - tf.reduce_sum(dxhat, axis=axes) - xhat * tf.reduce_sum(dxhat * xhat, axis=axes)
            )
            return dx, dgamma, dbeta

        return y, grad

    y = _bn(x, gamma, beta)
    mean = tf.stop_gradient(tf.reduce_mean(x, axis=axes))
    var = tf.stop_gradient(tf.reduce_mean(tf.square(x - mean), axis=axes))
    return y, mean, var


def embedding_lookup(table, ids):
    """Gather rows; the table gradient is one_hot(ids)^T @ dy (dense, builtin)."""
    vocab, dim = table.shape

    @tf.custom_gradient
    def _lookup(table):
        y = tf.gather(table, ids)

        def grad(dy):
            flat_ids = tf.reshape(ids, [-1])
            onehot = tf.one_hot(flat_ids, vocab, dtype=dy.dtype)
            return tf.matmul(onehot, tf.reshape(dy, [-1, dim]), transpose_a=True)

        return y, grad

    return _lookup(table)
