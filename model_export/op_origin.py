"""Which Keras layer an op of the traced train step came from, for one-line errors.

Keras runs each layer's ``call`` under a name scope of the layer's name (TensorFlow adds
``_1``, ``_2`` when a scope is re-entered), and TensorFlow's autodiff puts an op's
gradient under ``gradient_tape/`` plus the forward op's scope. The deepest scope that
names a layer of the model is the layer the op belongs to.
"""

from __future__ import annotations

import re

from model_export.sublayers import sublayers

_SUFFIX = re.compile(r"_\d+$")
# The converter's error locations: fused["OpType:", "scope/of/the/op@__inference_..."]
_LOCATION = re.compile(r'fused\["([A-Za-z0-9_]+):", "([^"@]+)@')


def layers_by_name(model) -> dict:
    return {layer.name: layer for layer in sublayers(model)}


def layer_text(layer) -> str:
    return f"layer '{layer.name}', {type(layer).__name__}"


def origin_suffix(op_name: str, layers: dict) -> str:
    """`` (layer 'conv2d', Conv2D)`` for the layer `op_name` came from, or nothing."""
    layer = layer_of(op_name, layers)
    return f" ({layer_text(layer)})" if layer is not None else ""


def layer_of(op_name: str, layers: dict):
    """The layer whose scope `op_name` (an op or tensor name) is in, or None."""
    found = None
    for part in op_name.split(":")[0].split("/")[:-1]:
        candidate = part
        while True:
            if candidate in layers:
                found = layers[candidate]
                break
            stripped = _SUFFIX.sub("", candidate)
            if stripped == candidate:
                break
            candidate = stripped
    return found


def describe(op_type: str, op_names: list[str], layers: dict) -> str:
    """``Erfc (layer 'gelu_block', Dense)``, naming each distinct layer once."""
    named = []
    for name in op_names:
        layer = layer_of(name, layers)
        if layer is not None:
            text = layer_text(layer)
            if text not in named:
                named.append(text)
    return f"{op_type} ({'; '.join(named)})" if named else op_type


def ops_in_converter_error(message: str) -> dict[str, list[str]]:
    """{op type: [op names]} for the ops a conversion error says have no builtin kernel."""
    flagged = set(re.findall(r"'tf\.([A-Za-z0-9_]+)' op is neither a custom op nor a flex op", message))
    flagged |= set(re.findall(r"\btf\.([A-Z][A-Za-z0-9_]*)\(", message))
    where: dict[str, list[str]] = {op: [] for op in flagged}
    for op_type, name in _LOCATION.findall(message):
        if op_type in where and name not in where[op_type]:
            where[op_type].append(name)
    return where
