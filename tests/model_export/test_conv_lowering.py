"""The im2col + matmul convolution equals tf.nn.conv2d, forward and backward; only
trainable, stride-1, thick-enough convolutions are lowered."""

import numpy as np
import pytest
import tensorflow as tf

from model_export.conv_lowering import _pads, conv2d_as_matmul, trainable_convolutions_as_matmul


@pytest.mark.parametrize("padding, size, kernel, cin", [("same", 9, 3, 4), ("valid", 9, 3, 4), ("same", 8, 5, 3),
                                                        ("same", 7, 1, 6), ("valid", 10, 2, 5)])
def test_forward_and_gradients_match_conv2d(padding, size, kernel, cin):
    rng = np.random.default_rng(0)
    x = tf.Variable(rng.normal(size=(2, size, size, cin)).astype(np.float32))
    k = tf.Variable(rng.normal(size=(kernel, kernel, cin, 3)).astype(np.float32))
    pads = _pads(padding, (size, size), (kernel, kernel), (1, 1))
    results = []
    for fn in (lambda: conv2d_as_matmul(x, k, (1, 1), pads), lambda: tf.nn.conv2d(x, k, 1, padding.upper())):
        with tf.GradientTape() as tape:
            y = fn()
            loss = tf.reduce_sum(y * tf.random.stateless_normal(y.shape, seed=[3, 4]))
        results.append([y.numpy(), *[g.numpy() for g in tape.gradient(loss, [x, k])]])
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-4)


def test_only_trainable_stride_1_convolutions_are_lowered():
    import keras

    def op_types(layer, shape):
        x = tf.zeros(shape)
        with trainable_convolutions_as_matmul():
            graph = tf.function(lambda t: layer(t)).get_concrete_function(x).graph
        return {op.type for op in graph.get_operations()}

    assert "Conv2D" not in op_types(keras.layers.Conv2D(8, 3, padding="same"), (2, 6, 6, 4))
    assert "Conv2D" in op_types(keras.layers.Conv2D(8, 3, strides=2), (2, 6, 6, 4))
    assert "Conv2D" in op_types(keras.layers.Conv2D(8, 3), (2, 6, 6, 1))  # 9 filter rows: too thin
    frozen = keras.layers.Conv2D(8, 3)
    frozen.trainable = False
    assert "Conv2D" in op_types(frozen, (2, 6, 6, 4))
