"""Every builtin-only gradient equals TensorFlow's own, op by op, in many geometries;
and the registry swap is undone on exit."""

import numpy as np
import pytest
import tensorflow as tf

from model_export import forward_ops
from model_export.builtin_gradients.convolution import dilate_kernel
from model_export.builtin_gradients.registry import BUILTIN_GRADIENTS, builtin_gradients

RNG = np.random.default_rng(0)


def _grads(fn, inputs, ours: bool):
    """Gradients of sum(fn(*inputs) * r) traced in a tf.function, as an export traces."""
    variables = [tf.Variable(x) for x in inputs]

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            out = fn(*variables)
            loss = tf.reduce_sum(out * tf.random.stateless_normal(out.shape, seed=[1, 2]))
        return tape.gradient(loss, variables)

    if ours:
        with builtin_gradients():
            concrete = step.get_concrete_function()
    else:
        concrete = step.get_concrete_function()
    return [tf.convert_to_tensor(g).numpy() for g in concrete()]


def _compare(fn, *inputs, atol=1e-4):
    mine = _grads(fn, inputs, ours=True)
    theirs = _grads(fn, inputs, ours=False)
    for a, b in zip(mine, theirs):
        np.testing.assert_allclose(a, b, atol=atol, rtol=1e-4)


def _normal(*shape):
    return RNG.normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("fn", [tf.nn.relu, tf.nn.relu6, tf.nn.elu, tf.nn.selu, tf.nn.softplus, tf.tanh,
                                tf.sigmoid, lambda x: tf.nn.leaky_relu(x, 0.2)])
def test_activations(fn):
    x = _normal(6, 10) * 4  # reaches both sides of relu6's 0 and 6
    _compare(fn, x)


@pytest.mark.parametrize("padding, stride, size, kernel", [
    ("SAME", 1, 9, 3), ("VALID", 1, 9, 3), ("SAME", 2, 9, 3), ("VALID", 2, 8, 3), ("SAME", 2, 8, 1),
    ("VALID", 3, 11, 5), ("SAME", 2, 10, 4), ("VALID", 1, 6, 1),
])
def test_conv2d(padding, stride, size, kernel):
    x, k = _normal(2, size, size, 3), _normal(kernel, kernel, 3, 4)
    _compare(lambda a, b: tf.nn.conv2d(a, b, stride, padding), x, k)


@pytest.mark.parametrize("padding, dilations", [("SAME", 2), ("VALID", (2, 3)), ("SAME", (1, 2))])
def test_conv2d_dilated(padding, dilations):
    """The reference is TensorFlow's gradient of the same convolution written with a
    zero-dilated kernel: TensorFlow's own dilated Conv2DBackpropInput exists only in its
    oneDNN kernels, which it turns on for some CPUs and not others (tests run with them
    off, tests/conftest.py), and a test must not depend on the CPU's vendor."""
    x, k = _normal(2, 9, 9, 2), _normal(3, 3, 2, 3)
    mine = _grads(lambda a, b: tf.nn.conv2d(a, b, 1, padding, dilations=dilations), (x, k), ours=True)
    theirs = _grads(lambda a, b: tf.nn.conv2d(a, dilate_kernel(b, _pair(dilations)), 1, padding), (x, k), ours=False)
    for a, b in zip(mine, theirs):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def _pair(d):
    return (d, d) if isinstance(d, int) else d


def test_dilate_kernel_places_taps_d_apart():
    k = tf.reshape(tf.range(1, 2 * 3 * 1 * 2 + 1, dtype=tf.float32), [2, 3, 1, 2])
    dilated = dilate_kernel(k, (3, 2)).numpy()
    assert dilated.shape == (4, 5, 1, 2)
    np.testing.assert_array_equal(dilated[::3, ::2], k.numpy())
    mask = np.ones(dilated.shape, bool)
    mask[::3, ::2] = False
    assert not dilated[mask].any()


@pytest.mark.parametrize("padding, stride, size", [("SAME", 1, 8), ("SAME", 2, 9), ("VALID", 2, 9), ("VALID", 1, 7)])
def test_conv2d_transpose(padding, stride, size):
    y, k = _normal(2, size, size, 3), _normal(3, 3, 2, 3)
    out_size = size * stride if padding == "SAME" else (size - 1) * stride + 3
    _compare(lambda a, b: tf.nn.conv2d_transpose(a, b, [2, out_size, out_size, 2], stride, padding), y, k)


@pytest.mark.parametrize("padding, stride, size, multiplier", [
    ("SAME", 1, 8, 1), ("SAME", 2, 8, 1), ("VALID", 2, 9, 1), ("SAME", 1, 7, 2), ("VALID", 1, 6, 3), ("SAME", 2, 7, 2),
])
def test_depthwise_conv2d(padding, stride, size, multiplier):
    x, k = _normal(2, size, size, 3), _normal(3, 3, 3, multiplier)
    _compare(lambda a, b: tf.nn.depthwise_conv2d(a, b, [1, stride, stride, 1], padding), x, k)


@pytest.mark.parametrize("pool, stride, padding, size", [
    (2, 2, "VALID", 8), (2, 2, "VALID", 9), (3, 2, "SAME", 9), (3, 1, "SAME", 6), (3, 2, "VALID", 9),
])
def test_max_pool(pool, stride, padding, size):
    _compare(lambda a: tf.nn.max_pool2d(a, pool, stride, padding), _normal(2, size, size, 3))


def test_max_pool_ties_go_to_the_first_maximum():
    x = np.zeros((1, 4, 4, 1), np.float32)  # every window ties (as after a ReLU)
    x[0, 3, 3, 0] = -1.0
    _compare(lambda a: tf.nn.max_pool2d(a, 2, 2, "VALID"), x)
    _compare(lambda a: tf.nn.max_pool2d(a, 3, 1, "SAME"), x)


@pytest.mark.parametrize("pool, stride, padding, size", [
    (2, 2, "VALID", 8), (2, 2, "VALID", 9), (3, 2, "SAME", 9), (3, 1, "SAME", 6), (2, 1, "VALID", 5),
])
def test_avg_pool(pool, stride, padding, size):
    _compare(lambda a: tf.nn.avg_pool2d(a, pool, stride, padding), _normal(2, size, size, 3))


def test_gather():
    ids = tf.constant(RNG.integers(0, 11, size=(6, 3)).astype(np.int32))
    _compare(lambda t: tf.gather(t, ids), _normal(11, 4))


@pytest.mark.parametrize("slicer", [
    lambda t: t[:, 2], lambda t: t[:, 1:4, :], lambda t: t[..., ::2], lambda t: t[:, ::-1, 1],
    lambda t: t[:, tf.newaxis, 3:], lambda t: t[1:, -2],
])
def test_strided_slice(slicer):
    _compare(slicer, _normal(3, 5, 6))


def test_erf_lowering_is_within_float32_resolution():
    x = np.linspace(-6, 6, 2001).astype(np.float32)
    np.testing.assert_allclose(forward_ops.erf(tf.constant(x)).numpy(), tf.math.erf(x).numpy(), atol=5e-7)
    np.testing.assert_allclose(forward_ops.erfc(tf.constant(x)).numpy(), tf.math.erfc(x).numpy(), atol=5e-7)


def test_registry_is_restored_after_the_scope():
    from tensorflow.python.framework import ops

    table = ops._gradient_registry._registry
    before = {op: table[op]["type"] for op in BUILTIN_GRADIENTS}
    with builtin_gradients():
        assert all(table[op]["type"] is not before[op] for op in BUILTIN_GRADIENTS)
    assert {op: table[op]["type"] for op in BUILTIN_GRADIENTS} == before
    with pytest.raises(RuntimeError):
        with builtin_gradients():
            raise RuntimeError("export failed")
    assert {op: table[op]["type"] for op in BUILTIN_GRADIENTS} == before
