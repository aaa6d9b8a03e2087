"""Every custom gradient equals TensorFlow's own gradient."""

import numpy as np
import pytest
import tensorflow as tf

from model_export import builtin_grads as bg


def _grads(fn, *inputs):
    vars_ = [tf.Variable(x) for x in inputs]
    with tf.GradientTape() as tape:
        out = fn(*vars_)
        loss = tf.reduce_sum(out * tf.random.stateless_normal(out.shape, seed=[1, 2]))
    return [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, vars_)]


@pytest.mark.parametrize("ours, theirs", [(bg.relu, tf.nn.relu), (bg.tanh, tf.tanh), (bg.sigmoid, tf.sigmoid)])
def test_activations(ours, theirs):
    x = np.random.default_rng(0).normal(size=(8, 16)).astype(np.float32)
    np.testing.assert_allclose(_grads(ours, x)[0], _grads(theirs, x)[0], atol=1e-6)


@pytest.mark.parametrize("padding, strides, size", [("SAME", 1, 9), ("VALID", 1, 9), ("SAME", 2, 9), ("VALID", 2, 8)])
def test_conv2d_filter_and_input_gradients(padding, strides, size):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, size, size, 3)).astype(np.float32)
    k = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    ours = _grads(lambda a, b: bg.conv2d(a, b, (strides, strides), padding), x, k)
    theirs = _grads(lambda a, b: tf.nn.conv2d(a, b, strides, padding), x, k)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("size", [8, 9])
def test_max_pool_gradient(size):
    x = np.random.default_rng(2).normal(size=(2, size, size, 3)).astype(np.float32)
    ours = _grads(lambda a: bg.max_pool2d(a, (2, 2)), x)[0]
    theirs = _grads(lambda a: tf.nn.max_pool2d(a, 2, 2, "VALID"), x)[0]
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_batch_norm_gradient():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(16, 5)).astype(np.float32) * 3 + 1
    gamma = rng.normal(size=5).astype(np.float32)
    beta = rng.normal(size=5).astype(np.float32)

    def reference(a, g, b):
        mean, var = tf.nn.moments(a, [0])
        return tf.nn.batch_normalization(a, mean, var, b, g, 1e-3)

    ours = _grads(lambda a, g, b: bg.batch_norm_train(a, g, b, 1e-3)[0], x, gamma, beta)
    for a, b in zip(ours, _grads(reference, x, gamma, beta)):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_embedding_gradient():
    rng = np.random.default_rng(4)
    table = rng.normal(size=(11, 4)).astype(np.float32)
    ids = tf.constant(rng.integers(0, 11, size=(6, 3)).astype(np.int32))
    ours = _grads(lambda t: bg.embedding_lookup(t, ids), table)[0]
    theirs = _grads(lambda t: tf.gather(t, ids), table)[0]
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
