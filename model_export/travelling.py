"""Which of the model's variables travel in an update.

The trainable variables, plus the non-trainable float variables the training forward
pass writes (BatchNormalization's moving statistics, in a layer that is itself
trainable). A frozen base (``trainable=False``) neither trains nor updates its
statistics, so its variables stay in the model file and never travel: a
transfer-learning update is the size of the head.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

_WRITES = {"AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp"}


@dataclass
class ModelVariable:
    path: str
    variable: tf.Variable  # the model's own variable (Keras's backing tf.Variable)
    trainable: bool


def backing(keras_variable) -> tf.Variable:
    """The tf.Variable behind a Keras 3 variable (the object itself under Keras 2 / tf.keras)."""
    return getattr(keras_variable, "_value", keras_variable)


def _is_float(v) -> bool:
    return "float" in str(v.dtype)


def written_by_training_forward(model, x_spec: tf.TensorSpec) -> set[int]:
    """ids of the tf.Variables `model(x, training=True)` assigns to."""
    graph = tf.function(lambda x: model(x, training=True)).get_concrete_function(x_spec).graph
    internal_to_external = {id(internal): external for external, internal in graph.captures}
    handles = {id(internal_to_external.get(id(op.inputs[0]))) for op in graph.get_operations() if op.type in _WRITES}
    return {id(backing(v)) for v in model.variables if id(backing(v).handle) in handles}


def travelling_variables(model, x_spec: tf.TensorSpec) -> list[ModelVariable]:
    written = written_by_training_forward(model, x_spec)
    out = []
    for v in model.variables:
        tv = backing(v)
        if not _is_float(v):
            continue  # e.g. a dropout layer's seed state
        if v.trainable:
            out.append(ModelVariable(v.path, tv, True))
        elif id(tv) in written:
            out.append(ModelVariable(v.path, tv, False))
    return out
