"""Swap builtin-only gradients into TensorFlow's gradient registry, for one export.

`tf.GradientTape` looks an op's gradient up by op type in TensorFlow's registry each
time it differentiates, so replacing the entries for the ops below while the train
step is traced makes TensorFlow's own autodiff emit builtin ops only. The previous
entries are put back on exit, under a lock, so a user's TensorFlow is unchanged
outside the export (and two exports in two threads do not interleave).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

from tensorflow.python.framework import ops

from model_export.builtin_gradients import activations, convolution, gather, matmul, pooling, slicing

BUILTIN_GRADIENTS = {
    "Relu": activations.relu,
    "Relu6": activations.relu6,
    "LeakyRelu": activations.leaky_relu,
    "Elu": activations.elu,
    "Selu": activations.selu,
    "Softplus": activations.softplus,
    "Tanh": activations.tanh,
    "Sigmoid": activations.sigmoid,
    "Conv2D": convolution.conv2d,
    "Conv2DBackpropInput": convolution.conv2d_backprop_input,
    "DepthwiseConv2dNative": convolution.depthwise_conv2d,
    "MaxPool": pooling.max_pool,
    "AvgPool": pooling.avg_pool,
    "GatherV2": gather.gather_v2,
    "MatMul": matmul.mat_mul,
    "StridedSlice": slicing.strided_slice,
}

class UnsupportedGradient(Exception):
    """A builtin gradient does not cover this use of an op (a dilated depthwise convolution, ...)."""

    def __init__(self, op_type: str, tensor: str, reason: str):
        super().__init__(f"{op_type}: {reason}")
        self.op_type, self.tensor, self.reason = op_type, tensor, reason


def _reporting(op_type: str, fn):
    def gradient(op, *grads):
        try:
            return fn(op, *grads)
        except NotImplementedError as exc:
            # The tape calls us under "gradient_tape/<the forward op's scope>": it names the layer.
            scope = ops.get_default_graph().get_name_scope()
            raise UnsupportedGradient(op_type, f"{scope}/{op_type}", str(exc)) from exc

    return gradient


# Re-entrant: an export that traces several signatures enters the scope once per trace.
_LOCK = threading.RLock()


@contextmanager
def builtin_gradients():
    table = ops._gradient_registry._registry  # noqa: SLF001 - TensorFlow has no public override
    with _LOCK:
        saved = {op: table.get(op) for op in BUILTIN_GRADIENTS}
        try:
            for op, fn in BUILTIN_GRADIENTS.items():
                table[op] = {"type": _reporting(op, fn), "location": ("fedge", 0, "builtin_gradients", "")}
            yield
        finally:
            for op, entry in saved.items():
                if entry is None:
                    table.pop(op, None)
                else:
                    table[op] = entry
