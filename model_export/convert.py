"""SavedModel -> `.tflite` with TFLite builtin ops only (or Flex, when explicitly allowed)."""

from __future__ import annotations

import re
import tempfile
from contextlib import contextmanager

import tensorflow as tf

from model_export.compact import compact
from model_export.errors import ExportError
from model_export.op_origin import describe, ops_in_converter_error


def _converter(saved_model_dir: str, allow_flex: bool, signature_keys: list[str]):
    conv = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=signature_keys)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS] + (
        [tf.lite.OpsSet.SELECT_TF_OPS] if allow_flex else []
    )
    conv.experimental_enable_resource_variables = True
    return conv


# TensorFlow's rule for a root name scope: SavedModel re-creates every variable under
# its own name as a scope. Keras names a layer after its class, so `class _LayerScale`
# gives `__layer_scale/...`, a name Keras accepts and the SavedModel writer refuses.
_VALID_ROOT_SCOPE = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*$")


def scope_safe_name(name: str) -> str:
    """`name` unchanged when it is a valid root scope; otherwise a valid one derived from it."""
    if _VALID_ROOT_SCOPE.match(name):
        return name
    safe = re.sub(r"[^A-Za-z0-9_.\\/>-]", "_", name)
    return safe if _VALID_ROOT_SCOPE.match(safe) else f"v{safe}"


@contextmanager
def scope_safe_variable_names(module):
    """Give each variable a valid name while the SavedModel is written, then put the names back.

    Only the SavedModel's internal names change: signatures address weights by position
    (protocol.manifest.weight_key), and the manifest keeps the Keras paths.
    """
    renamed = []
    for var in module.variables:
        handle_name = getattr(var, "_handle_name", None)  # "name:0"; ResourceVariable.name reads it
        if handle_name is None:
            continue
        name, colon, index = handle_name.rpartition(":")
        if colon and scope_safe_name(name) != name:
            renamed.append((var, handle_name))
            var._handle_name = f"{scope_safe_name(name)}:{index}"
    try:
        yield
    finally:
        for var, handle_name in renamed:
            var._handle_name = handle_name


def convert_module(module, signatures: dict, allow_flex: bool = False, layers: dict | None = None
                   ) -> tuple[bytes, list[str]]:
    """Convert; return (flatbuffer bytes, compacted (see `compact`), the Flex ops it needs — empty
    when builtins-only).

    `layers` (name -> Keras layer) lets the error name the layer each unsupported op
    came from.
    """
    with tempfile.TemporaryDirectory() as tmp:
        with scope_safe_variable_names(module):
            tf.saved_model.save(module, tmp, signatures=signatures)
        try:
            return compact(bytes(_converter(tmp, False, list(signatures)).convert())), []
        except Exception as exc:  # the converter raises ConverterError or plain errors
            where = ops_in_converter_error(str(exc))
            if not where:
                raise ExportError(f"TFLite conversion failed: {str(exc).strip().splitlines()[0]}") from exc
            if not allow_flex:
                blocking = ", ".join(describe(op, names, layers or {}) for op, names in sorted(where.items()))
                raise ExportError(
                    f"no TFLite builtin kernel for {blocking}: the stock LiteRT runtime cannot train this model "
                    "(pass --allow-flex to export for a runtime with the Flex delegate)"
                ) from exc
        return compact(bytes(_converter(tmp, True, list(signatures)).convert())), sorted(where)
