"""The compiled Keras loss, as a per-example loss built from builtin ops.

Each matches Keras's TensorFlow backend formula, including its shortcut of reading the
logits under a final softmax / sigmoid (so a probability output trains as stably as
``from_logits=True``); the parity report checks them against Keras's own loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from model_export.errors import ExportError

EPSILON = 1e-7  # keras.config.epsilon()

_ALIASES = {
    "sparse_categorical_crossentropy": "sparse_categorical_crossentropy",
    "categorical_crossentropy": "categorical_crossentropy",
    "binary_crossentropy": "binary_crossentropy",
    "bce": "binary_crossentropy",
    "mse": "mean_squared_error",
    "mean_squared_error": "mean_squared_error",
    "mae": "mean_absolute_error",
    "mean_absolute_error": "mean_absolute_error",
    "huber": "huber",
    "huber_loss": "huber",
}
SUPPORTED = sorted(set(_ALIASES.values()))

# What each loss makes of the labels: (task_kind, label dtype).
TASK_KINDS = {
    "sparse_categorical_crossentropy": ("classification", "int32"),
    "categorical_crossentropy": ("one_hot_classification", "float32"),
    "binary_crossentropy": ("binary_classification", "float32"),
    "mean_squared_error": ("regression", "float32"),
    "mean_absolute_error": ("regression", "float32"),
    "huber": ("regression", "float32"),
}


@dataclass(frozen=True)
class LossSpec:
    name: str
    from_logits: bool = False
    delta: float = 1.0  # Huber's

    @property
    def task_kind(self) -> str:
        return TASK_KINDS[self.name][0]

    @property
    def label_dtype(self) -> str:
        return TASK_KINDS[self.name][1]


def _loss_name(loss) -> str:
    if isinstance(loss, str):
        return loss
    return getattr(loss, "name", None) or getattr(loss, "__name__", "") or type(loss).__name__


def loss_spec_of(model) -> LossSpec:
    loss = getattr(model, "loss", None)
    if loss is None:
        raise ExportError("the model is not compiled: call model.compile(optimizer=..., loss=...) first")
    if isinstance(loss, (list, tuple, dict)):
        raise ExportError("models with several losses are not supported")
    name = _loss_name(loss)
    if name not in _ALIASES:
        raise ExportError(f"loss '{name}' is not supported; use one of {', '.join(SUPPORTED)}")
    config = loss.get_config() if hasattr(loss, "get_config") else {}
    # Loss objects wrapping a function keep its arguments (Huber's delta) out of get_config.
    config = {**getattr(loss, "_fn_kwargs", {}), **config}
    if config.get("label_smoothing"):
        raise ExportError(f"loss '{name}' with label_smoothing is not supported")
    if config.get("ignore_class") is not None:
        raise ExportError(f"loss '{name}' with ignore_class is not supported")
    if config.get("axis", -1) != -1:
        raise ExportError(f"loss '{name}' over axis {config['axis']} is not supported (only the last axis)")
    reduction = config.get("reduction", "sum_over_batch_size")
    if reduction not in ("sum_over_batch_size", "auto", None):
        raise ExportError(f"loss reduction '{reduction}' is not supported (only sum_over_batch_size)")
    return LossSpec(_ALIASES[name], bool(config.get("from_logits", False)), float(config.get("delta", 1.0)))


def _logits_under(out, op_type: str):
    """Keras's shortcut: the input of a final Softmax / Sigmoid op, or None."""
    op = getattr(out, "op", None)
    if op is not None and op.type == op_type:
        return op.inputs[0]
    return None


def _mean_per_example(t, batch: int):
    return tf.reduce_mean(tf.reshape(t, [batch, -1]), axis=-1)


def per_example_loss(spec: LossSpec, out, y, batch: int):
    """A [batch] vector: each example's loss, averaged over its non-batch positions."""
    name = spec.name
    if name in ("sparse_categorical_crossentropy", "categorical_crossentropy"):
        target = tf.one_hot(y, out.shape[-1]) if name == "sparse_categorical_crossentropy" else y
        logits = out if spec.from_logits else _logits_under(out, "Softmax")
        if logits is not None:
            log_p = tf.nn.log_softmax(logits, axis=-1)
        else:
            p = out / tf.reduce_sum(out, axis=-1, keepdims=True)
            log_p = tf.math.log(tf.clip_by_value(p, EPSILON, 1.0 - EPSILON))
        return _mean_per_example(-tf.reduce_sum(target * log_p, axis=-1), batch)
    if name == "binary_crossentropy":
        logits = out if spec.from_logits else _logits_under(out, "Sigmoid")
        if logits is not None:
            # sigmoid_cross_entropy_with_logits, written with builtins (no LOG1P kernel needed).
            bce = tf.maximum(logits, 0.0) - logits * y + tf.math.log(1.0 + tf.exp(-tf.abs(logits)))
        else:
            p = tf.clip_by_value(out, EPSILON, 1.0 - EPSILON)
            bce = -(y * tf.math.log(p) + (1.0 - y) * tf.math.log(1.0 - p))
        return _mean_per_example(bce, batch)
    error = out - y
    if name == "mean_squared_error":
        return _mean_per_example(tf.square(error), batch)
    if name == "mean_absolute_error":
        return _mean_per_example(tf.abs(error), batch)
    abs_error = tf.abs(error)
    d = spec.delta
    huber = tf.where(abs_error <= d, 0.5 * tf.square(error), d * abs_error - 0.5 * d * d)
    return _mean_per_example(huber, batch)


def per_example_correct(spec: LossSpec, out, y, batch: int):
    """A [batch] vector in [0, 1]: the fraction of each example's predictions that are right."""
    name = spec.name
    if name == "sparse_categorical_crossentropy":
        hit = tf.equal(tf.cast(tf.argmax(out, axis=-1), tf.int32), y)
    elif name == "categorical_crossentropy":
        hit = tf.equal(tf.argmax(out, axis=-1), tf.argmax(y, axis=-1))
    elif name == "binary_crossentropy":
        threshold = 0.0 if spec.from_logits else 0.5
        hit = tf.equal(out > threshold, y > 0.5)
    else:
        return tf.zeros([batch])
    return _mean_per_example(tf.cast(hit, tf.float32), batch)
