"""The exported graph: a tf.Module with the fedge signatures over translated layers.

Signatures (all with a static batch dimension, see the manifest's ``batch_size``):

- ``train(x, y, sample_weight, learning_rate) -> loss``: one optimizer step; padded
  rows carry ``sample_weight`` 0 so a short last batch trains exactly.
- ``infer(x) -> output``: probabilities when the model ends in softmax.
- ``evaluate(x, y, sample_weight) -> loss_sum, correct``: weighted sums, so a caller
  adds them over batches and divides by the weight total.
- ``get_weights() -> w000, w001, ...``: every model variable in update order.
- ``set_weights(w000, ...) -> ok``: loads them and *resets the optimizer slots*, so each
  round's local training starts from fresh optimizer state; slots never travel.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from model_export.errors import ExportError
from model_export.layers import translate
from protocol.manifest import weight_key


@dataclass(frozen=True)
class LossSpec:
    name: str  # "sparse_categorical_crossentropy" or "mean_squared_error"
    from_logits: bool = False


@dataclass(frozen=True)
class OptimizerSpec:
    name: str  # "sgd" or "adam"
    learning_rate: float
    momentum: float = 0.0
    nesterov: bool = False
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def loss_spec_of(model) -> LossSpec:
    loss = getattr(model, "loss", None)
    if loss is None:
        raise ExportError("the model is not compiled: call model.compile(optimizer=..., loss=...) first")
    if isinstance(loss, (list, tuple, dict)):
        raise ExportError("models with several losses are not supported")
    name = loss if isinstance(loss, str) else getattr(loss, "name", None) or getattr(loss, "__name__", "")
    aliases = {
        "sparse_categorical_crossentropy": "sparse_categorical_crossentropy",
        "mse": "mean_squared_error",
        "mean_squared_error": "mean_squared_error",
    }
    if name not in aliases:
        raise ExportError(
            f"loss '{name}' is not supported; use sparse_categorical_crossentropy or mean_squared_error"
        )
    from_logits = bool(getattr(loss, "from_logits", False)) if not isinstance(loss, str) else False
    return LossSpec(aliases[name], from_logits)


def optimizer_spec_of(model) -> OptimizerSpec:
    opt = getattr(model, "optimizer", None)
    if opt is None:
        raise ExportError("the model is not compiled with an optimizer")
    kind = opt.__class__.__name__.lower()
    for attr in ("clipnorm", "clipvalue", "global_clipnorm", "weight_decay"):
        if getattr(opt, attr, None):
            raise ExportError(f"optimizer option {attr} is not supported by fedge export")
    lr = float(opt.learning_rate.numpy()) if hasattr(opt.learning_rate, "numpy") else float(opt.learning_rate)
    if kind == "sgd":
        return OptimizerSpec("sgd", lr, momentum=float(opt.momentum), nesterov=bool(opt.nesterov))
    if kind == "adam":
        if getattr(opt, "amsgrad", False):
            raise ExportError("Adam(amsgrad=True) is not supported")
        return OptimizerSpec("adam", lr, beta_1=float(opt.beta_1), beta_2=float(opt.beta_2), epsilon=float(opt.epsilon))
    raise ExportError(f"optimizer '{opt.__class__.__name__}' is not supported; use SGD (with momentum) or Adam")


class TrainingGraph(tf.Module):
    def __init__(self, model, batch_size: int, stochastic: bool = True):
        super().__init__(name="fedge")
        self.batch_size = batch_size
        self.stochastic = stochastic
        self.loss_spec = loss_spec_of(model)
        self.opt = optimizer_spec_of(model)
        self.layers = translate(model)
        self.model_vars = [v for layer in self.layers for v in layer.variables]
        # Assigning the variables to attributes makes tf.Module track them for the SavedModel.
        self.all_variables = [v.variable for v in self.model_vars]
        self.trainable = [v.variable for v in self.model_vars if v.trainable]
        self.softmax_output = self.layers[-1].ends_in_softmax
        if self.loss_spec.name == "sparse_categorical_crossentropy":
            if self.softmax_output and self.loss_spec.from_logits:
                raise ExportError("the model ends in softmax but the loss has from_logits=True")
            if not self.softmax_output and not self.loss_spec.from_logits:
                raise ExportError(
                    "sparse_categorical_crossentropy needs a final softmax or from_logits=True"
                )
        self.step = tf.Variable(0.0, trainable=False, name="optimizer_step")
        self.slots = []
        n_slots = {"sgd": 1 if self.opt.momentum else 0, "adam": 2}[self.opt.name]
        for v in self.trainable:
            self.slots.append([tf.Variable(tf.zeros(v.shape), trainable=False) for _ in range(n_slots)])
        in_shape = tuple(model.inputs[0].shape[1:])
        if any(d is None for d in in_shape):
            raise ExportError(f"the model's input shape {in_shape} has an unknown dimension; give a fixed shape")
        self.input_shape = in_shape
        self.input_dtype = "int32" if "int" in str(model.inputs[0].dtype) else "float32"
        out_shape = tuple(model.outputs[0].shape[1:])
        if self.loss_spec.name == "sparse_categorical_crossentropy":
            self.num_classes = int(out_shape[-1])
            self.label_shape, self.label_dtype = (), "int32"
        else:
            self.num_classes = 0
            self.label_shape, self.label_dtype = out_shape, "float32"

    # -- building blocks -------------------------------------------------------------
    def _forward(self, x, training: bool):
        updates: list = []
        for layer in self.layers:
            x = layer(x, training, self.stochastic, updates)
        return x, updates

    def _per_example_loss(self, out, y):
        if self.loss_spec.name == "sparse_categorical_crossentropy":
            onehot = tf.one_hot(y, self.num_classes)
            return -tf.reduce_sum(onehot * tf.nn.log_softmax(out, axis=-1), axis=-1)
        err = tf.square(out - y)
        return tf.reduce_mean(tf.reshape(err, [self.batch_size, -1]), axis=-1)

    def _apply_gradients(self, grads, lr):
        o = self.opt
        if o.name == "adam":
            self.step.assign_add(1.0)
            alpha = lr * tf.sqrt(1.0 - tf.pow(o.beta_2, self.step)) / (1.0 - tf.pow(o.beta_1, self.step))
        for var, slots, g in zip(self.trainable, self.slots, grads):
            if o.name == "sgd":
                if o.momentum:
                    m = slots[0]
                    m.assign(m * o.momentum - g * lr)
                    var.assign_add(m * o.momentum - g * lr if o.nesterov else m)
                else:
                    var.assign_sub(g * lr)
            else:
                m, v = slots
                m.assign_add((g - m) * (1.0 - o.beta_1))
                v.assign_add((g * g - v) * (1.0 - o.beta_2))
                var.assign_sub(m * alpha / (tf.sqrt(v) + o.epsilon))

    # -- signatures ----------------------------------------------------------------
    def train(self, x, y, sample_weight, learning_rate):
        with tf.GradientTape() as tape:
            out, updates = self._forward(x, training=True)
            per_example = self._per_example_loss(out, y)
            loss = tf.reduce_sum(per_example * sample_weight) / tf.maximum(tf.reduce_sum(sample_weight), 1.0)
        grads = tape.gradient(loss, self.trainable)
        for var, value in updates:
            var.assign(value)
        self._apply_gradients(grads, learning_rate[0])
        return {"loss": loss}

    def infer(self, x):
        out, _ = self._forward(x, training=False)
        return {"output": tf.nn.softmax(out, axis=-1) if self.softmax_output else out}

    def evaluate(self, x, y, sample_weight):
        out, _ = self._forward(x, training=False)
        loss_sum = tf.reduce_sum(self._per_example_loss(out, y) * sample_weight)
        if self.num_classes:
            hit = tf.cast(tf.equal(tf.cast(tf.argmax(out, axis=-1), tf.int32), y), tf.float32)
            correct = tf.reduce_sum(hit * sample_weight)
        else:
            correct = tf.constant(0.0)
        return {"loss_sum": loss_sum, "correct": correct}

    def get_weights(self):
        return {weight_key(i): tf.identity(v.variable) for i, v in enumerate(self.model_vars)}

    def set_weights(self, weights):
        for v, value in zip(self.model_vars, weights):
            v.variable.assign(value)
        for slots in self.slots:
            for s in slots:
                s.assign(tf.zeros(s.shape))
        self.step.assign(0.0)
        return {"ok": tf.constant(1, tf.int32)}

    def concrete_signatures(self) -> dict:
        b = self.batch_size
        x = tf.TensorSpec([b, *self.input_shape], self.input_dtype, name="x")
        y = tf.TensorSpec([b, *self.label_shape], self.label_dtype, name="y")
        w = tf.TensorSpec([b], tf.float32, name="sample_weight")
        # float32[1], not a scalar: LiteRT's Python signature runner resizes every input on
        # every call, and resizing a rank-0 input crashed ai-edge-litert 2.3 on aarch64
        # (emulated Pi, SIGSEGV in ResizeInputTensor). A rank-1 input avoids that path.
        lr = tf.TensorSpec([1], tf.float32, name="learning_rate")
        wspecs = [tf.TensorSpec(v.variable.shape, tf.float32, name=weight_key(i)) for i, v in enumerate(self.model_vars)]
        return {
            "train": tf.function(self.train).get_concrete_function(x, y, w, lr),
            "infer": tf.function(self.infer).get_concrete_function(x),
            "evaluate": tf.function(self.evaluate).get_concrete_function(x, y, w),
            "get_weights": tf.function(self.get_weights).get_concrete_function(),
            "set_weights": tf.function(self.set_weights).get_concrete_function(wspecs),
        }
