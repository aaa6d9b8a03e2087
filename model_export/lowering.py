"""The scope an export traces in: every op it produces has a TFLite builtin kernel.

- builtin-only gradients swapped into TensorFlow's gradient registry
  (`builtin_gradients.registry`);
- forward ops with no builtin re-expressed (`forward_ops`: erf/erfc, dropout's mask);
- recurrent layers unrolled over their static sequence length (a symbolic while loop
  would need TensorList ops, which have no builtin kernels);
- trainable convolutions as im2col + matmul (`conv_lowering`: LiteRT runs them faster);
- with ``stochastic=False``, dropout switched off (the parity build).

Everything is put back on exit.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager

from model_export import forward_ops
from model_export.conv_lowering import trainable_convolutions_as_matmul
from model_export.builtin_gradients.registry import builtin_gradients
from model_export.sublayers import sublayers


@contextmanager
def _unrolled(model):
    changed = [layer for layer in sublayers(model) if getattr(layer, "unroll", True) is False]
    for layer in changed:
        layer.unroll = True
    try:
        yield
    finally:
        for layer in changed:
            layer.unroll = False


@contextmanager
def builtin_lowering(model, stochastic: bool = True):
    with ExitStack() as stack:
        stack.enter_context(builtin_gradients())
        stack.enter_context(forward_ops.lowered_forward_ops(stochastic=stochastic))
        stack.enter_context(_unrolled(model))
        stack.enter_context(trainable_convolutions_as_matmul())
        yield
