"""SavedModel -> `.tflite` with TFLite builtin ops only (or Flex, when explicitly allowed)."""

from __future__ import annotations

import tempfile

import tensorflow as tf

from model_export.errors import ExportError
from model_export.op_origin import describe, ops_in_converter_error


def _converter(saved_model_dir: str, allow_flex: bool):
    conv = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=["train", "infer", "evaluate", "get_weights", "set_weights"]
    )
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS] + (
        [tf.lite.OpsSet.SELECT_TF_OPS] if allow_flex else []
    )
    conv.experimental_enable_resource_variables = True
    return conv


def convert_module(module, signatures: dict, allow_flex: bool = False, layers: dict | None = None
                   ) -> tuple[bytes, list[str]]:
    """Convert; return (flatbuffer bytes, the Flex ops it needs — empty when builtins-only).

    `layers` (name -> Keras layer) lets the error name the layer each unsupported op
    came from.
    """
    with tempfile.TemporaryDirectory() as tmp:
        tf.saved_model.save(module, tmp, signatures=signatures)
        try:
            return bytes(_converter(tmp, allow_flex=False).convert()), []
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
        return bytes(_converter(tmp, allow_flex=True).convert()), sorted(where)
