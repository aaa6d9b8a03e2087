"""SavedModel -> `.tflite` with TFLite builtin ops only (or Flex, when explicitly allowed)."""

from __future__ import annotations

import re
import tempfile

import tensorflow as tf

from model_export.errors import ExportError

_FLEX_OP = re.compile(r"\btf\.([A-Z][A-Za-z0-9_]*)")


def _converter(saved_model_dir: str, allow_flex: bool):
    conv = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=["train", "infer", "evaluate", "get_weights", "set_weights"]
    )
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS] + (
        [tf.lite.OpsSet.SELECT_TF_OPS] if allow_flex else []
    )
    conv.experimental_enable_resource_variables = True
    return conv


def flex_ops_in_error(message: str) -> list[str]:
    """The TensorFlow op names a conversion error says have no builtin kernel."""
    return sorted(set(_FLEX_OP.findall(message)))


def convert_module(module, signatures: dict, allow_flex: bool = False) -> tuple[bytes, list[str]]:
    """Convert; return (flatbuffer bytes, the Flex ops it needs — empty when builtins-only)."""
    with tempfile.TemporaryDirectory() as tmp:
        tf.saved_model.save(module, tmp, signatures=signatures)
        try:
            return bytes(_converter(tmp, allow_flex=False).convert()), []
        except Exception as exc:  # the converter raises ConverterError or plain errors
            ops = flex_ops_in_error(str(exc))
            if not ops:
                raise ExportError(f"TFLite conversion failed: {str(exc).strip().splitlines()[0]}") from exc
            if not allow_flex:
                raise ExportError(
                    f"the train step needs TensorFlow ops with no TFLite builtin kernel: {', '.join(ops)}; "
                    "the stock LiteRT runtime cannot run it (pass --allow-flex to export anyway)"
                ) from exc
        return bytes(_converter(tmp, allow_flex=True).convert()), ops
