"""Translate a Keras layer chain into TensorFlow code built from `builtin_grads`.

The exported train step does not call Keras: each supported Keras layer is
re-expressed with ops whose gradients are TFLite builtins, reading the layer's
weights into fresh ``tf.Variable``s. Parity against Keras (see `parity.py`) proves the
translation. A layer outside this table fails the export naming the layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import tensorflow as tf

from model_export import builtin_grads as bg
from model_export.errors import ExportError

_ACTIVATIONS: dict[str, Callable] = {
    "linear": lambda x: x,
    "relu": bg.relu,
    "tanh": bg.tanh,
    "sigmoid": bg.sigmoid,
}


@dataclass
class ModelVariable:
    path: str
    variable: tf.Variable
    trainable: bool


class TranslatedLayer:
    name: str
    variables: list[ModelVariable]
    # True when the layer's activation is the model's final softmax, left to the loss
    # (log_softmax) and to `infer` (softmax); the layer itself then returns logits.
    ends_in_softmax: bool = False

    def __call__(self, x, training: bool, stochastic: bool, updates: list):  # pragma: no cover - interface
        raise NotImplementedError


def _var(layer, keras_var, trainable: bool | None = None) -> ModelVariable:
    value = np.asarray(keras_var.numpy())
    return ModelVariable(
        path=keras_var.path,
        variable=tf.Variable(value, name=keras_var.name, trainable=bool(keras_var.trainable)),
        trainable=bool(keras_var.trainable) if trainable is None else trainable,
    )


def _activation(layer, name: str, is_last: bool):
    if name == "softmax":
        if not is_last:
            raise ExportError(
                f"layer '{layer.name}': softmax is only supported as the model's final activation"
            )
        return None  # the loss uses log_softmax on the logits
    if name not in _ACTIVATIONS:
        raise ExportError(
            f"layer '{layer.name}': activation '{name}' is not supported "
            f"(supported: {', '.join(sorted(_ACTIVATIONS))}, softmax at the end)"
        )
    return _ACTIVATIONS[name]


def _activation_name(layer) -> str:
    act = getattr(layer, "activation", None)
    if act is None:
        return "linear"
    return getattr(act, "__name__", str(act))


class DenseLayer(TranslatedLayer):
    def __init__(self, layer, is_last: bool):
        self.name = layer.name
        self.kernel = _var(layer, layer.kernel)
        self.bias = _var(layer, layer.bias) if layer.use_bias else None
        self.variables = [v for v in (self.kernel, self.bias) if v is not None]
        self.act = _activation(layer, _activation_name(layer), is_last)
        self.ends_in_softmax = self.act is None

    def __call__(self, x, training, stochastic, updates):
        if len(x.shape) != 2:
            # Dense over a sequence: flatten the leading axes for a 2-D matmul.
            lead = x.shape[:-1]
            y = tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), self.kernel.variable)
            y = tf.reshape(y, [*lead, y.shape[-1]])
        else:
            y = tf.matmul(x, self.kernel.variable)
        if self.bias is not None:
            y = y + self.bias.variable
        return y if self.act is None else self.act(y)


class Conv2DLayer(TranslatedLayer):
    def __init__(self, layer, is_last: bool):
        self.name = layer.name
        if layer.data_format != "channels_last":
            raise ExportError(f"layer '{layer.name}': only channels_last Conv2D is supported")
        if tuple(layer.dilation_rate) != (1, 1) or getattr(layer, "groups", 1) != 1:
            raise ExportError(f"layer '{layer.name}': dilated or grouped Conv2D is not supported")
        self.strides = tuple(layer.strides)
        self.padding = layer.padding.upper()
        self.kernel = _var(layer, layer.kernel)
        self.bias = _var(layer, layer.bias) if layer.use_bias else None
        self.variables = [v for v in (self.kernel, self.bias) if v is not None]
        self.act = _activation(layer, _activation_name(layer), is_last)
        self.ends_in_softmax = self.act is None

    def __call__(self, x, training, stochastic, updates):
        y = bg.conv2d(x, self.kernel.variable, self.strides, self.padding)
        if self.bias is not None:
            y = y + self.bias.variable
        return y if self.act is None else self.act(y)


class MaxPool2DLayer(TranslatedLayer):
    def __init__(self, layer, is_last: bool):
        self.name = layer.name
        self.variables = []
        self.pool = tuple(layer.pool_size)
        strides = tuple(layer.strides) if layer.strides is not None else self.pool
        if strides != self.pool or layer.padding != "valid":
            raise ExportError(
                f"layer '{layer.name}': MaxPooling2D needs strides == pool_size and padding='valid'"
            )

    def __call__(self, x, training, stochastic, updates):
        return bg.max_pool2d(x, self.pool)


class FlattenLayer(TranslatedLayer):
    def __init__(self, layer, is_last: bool):
        self.name = layer.name
        self.variables = []

    def __call__(self, x, training, stochastic, updates):
        return tf.reshape(x, [x.shape[0], -1])


class ReshapeLayer(TranslatedLayer):
    def __init__(self, layer, is_last: bool):
        self.name = layer.name
        self.variables = []
        self.target = tuple(layer.target_shape)

    def __call__(self, x, training, stochastic, updates):
        return tf.reshape(x, [x.shape[0], *self.target])


class ActivationLayer(TranslatedLayer):
    def __init__(self, layer, is_last: bool):
        self.name = layer.name
        self.variables = []
        name = _activation_name(layer) if layer.__class__.__name__ == "Activation" else "relu"
        if layer.__class__.__name__ == "ReLU" and (
            getattr(layer, "max_value", None) is not None
            or float(getattr(layer, "negative_slope", 0.0)) != 0.0
            or float(getattr(layer, "threshold", 0.0)) != 0.0
        ):
            raise ExportError(f"layer '{layer.name}': only a plain ReLU (no max_value/slope/threshold) is supported")
        self.act = _activation(layer, name, is_last)
        self.ends_in_softmax = self.act is None

    def __call__(self, x, training, stochastic, updates):
        return x if self.act is None else self.act(x)


class DropoutLayer(TranslatedLayer):
    def __init__(self, layer, is_last: bool):
        self.name = layer.name
        self.variables = []
        self.rate = float(layer.rate)
        if getattr(layer, "noise_shape", None) is not None:
            raise ExportError(f"layer '{layer.name}': Dropout with noise_shape is not supported")

    def __call__(self, x, training, stochastic, updates):
        if not (training and stochastic) or self.rate == 0.0:
            return x
        keep = tf.cast(tf.random.uniform(x.shape) >= self.rate, x.dtype)
        return x * keep / (1.0 - self.rate)


class BatchNormLayer(TranslatedLayer):
    def __init__(self, layer, is_last: bool):
        self.name = layer.name
        axis = layer.axis if isinstance(layer.axis, int) else (layer.axis[0] if len(layer.axis) == 1 else None)
        if axis not in (-1, len(layer.input.shape) - 1):
            raise ExportError(f"layer '{layer.name}': BatchNormalization must normalize the last axis")
        if getattr(layer, "renorm", False):
            raise ExportError(f"layer '{layer.name}': batch renormalization is not supported")
        self.epsilon = float(layer.epsilon)
        self.momentum = float(layer.momentum)
        self.gamma = _var(layer, layer.gamma) if layer.scale else None
        self.beta = _var(layer, layer.beta) if layer.center else None
        self.moving_mean = _var(layer, layer.moving_mean, trainable=False)
        self.moving_var = _var(layer, layer.moving_variance, trainable=False)
        self.variables = [v for v in (self.gamma, self.beta, self.moving_mean, self.moving_var) if v is not None]

    def __call__(self, x, training, stochastic, updates):
        c = x.shape[-1]
        gamma = self.gamma.variable if self.gamma else tf.ones([c])
        beta = self.beta.variable if self.beta else tf.zeros([c])
        if not training:
            inv = 1.0 / tf.sqrt(self.moving_var.variable + self.epsilon)
            return (x - self.moving_mean.variable) * inv * gamma + beta
        y, mean, var = bg.batch_norm_train(x, gamma, beta, self.epsilon)
        m = self.momentum
        updates.append((self.moving_mean.variable, self.moving_mean.variable * m + mean * (1.0 - m)))
        updates.append((self.moving_var.variable, self.moving_var.variable * m + var * (1.0 - m)))
        return y


class EmbeddingLayer(TranslatedLayer):
    def __init__(self, layer, is_last: bool):
        self.name = layer.name
        if getattr(layer, "mask_zero", False):
            raise ExportError(f"layer '{layer.name}': Embedding(mask_zero=True) is not supported")
        self.table = _var(layer, layer.embeddings)
        self.variables = [self.table]

    def __call__(self, x, training, stochastic, updates):
        return bg.embedding_lookup(self.table.variable, tf.cast(x, tf.int32))


class LSTMLayer(TranslatedLayer):
    """Keras LSTM (gate order i, f, c, o), unrolled over the static sequence length."""

    def __init__(self, layer, is_last: bool):
        self.name = layer.name
        cell = layer.cell
        if _activation_name(cell) != "tanh" or getattr(cell.recurrent_activation, "__name__", "") != "sigmoid":
            raise ExportError(f"layer '{layer.name}': LSTM must use tanh / sigmoid activations")
        if layer.go_backwards or layer.stateful or layer.return_state:
            raise ExportError(f"layer '{layer.name}': go_backwards/stateful/return_state LSTM is not supported")
        if float(cell.dropout) or float(cell.recurrent_dropout):
            raise ExportError(f"layer '{layer.name}': LSTM dropout is not supported; add a Dropout layer instead")
        self.units = int(cell.units)
        self.return_sequences = bool(layer.return_sequences)
        self.kernel = _var(layer, cell.kernel)
        self.recurrent = _var(layer, cell.recurrent_kernel)
        self.bias = _var(layer, cell.bias) if cell.use_bias else None
        self.variables = [v for v in (self.kernel, self.recurrent, self.bias) if v is not None]

    def __call__(self, x, training, stochastic, updates):
        batch = x.shape[0]
        h = tf.zeros([batch, self.units])
        c = tf.zeros([batch, self.units])
        outputs = []
        for x_t in tf.unstack(x, axis=1):
            z = tf.matmul(x_t, self.kernel.variable) + tf.matmul(h, self.recurrent.variable)
            if self.bias is not None:
                z = z + self.bias.variable
            zi, zf, zc, zo = tf.split(z, 4, axis=1)
            c = bg.sigmoid(zf) * c + bg.sigmoid(zi) * bg.tanh(zc)
            h = bg.sigmoid(zo) * bg.tanh(c)
            outputs.append(h)
        return tf.stack(outputs, axis=1) if self.return_sequences else h


TRANSLATORS = {
    "Dense": DenseLayer,
    "Conv2D": Conv2DLayer,
    "MaxPooling2D": MaxPool2DLayer,
    "Flatten": FlattenLayer,
    "Reshape": ReshapeLayer,
    "Activation": ActivationLayer,
    "ReLU": ActivationLayer,
    "Dropout": DropoutLayer,
    "BatchNormalization": BatchNormLayer,
    "Embedding": EmbeddingLayer,
    "LSTM": LSTMLayer,
}


def layer_chain(model) -> list:
    """The model's layers in order, checking that they form a single chain."""
    layers = [l for l in model.layers if l.__class__.__name__ != "InputLayer"]
    if not layers:
        raise ExportError("the model has no layers")
    if model.__class__.__name__ != "Sequential":
        for prev, layer in zip(layers, layers[1:]):
            inbound = layer._inbound_nodes[0].parent_nodes if layer._inbound_nodes else []
            parents = [n.operation for n in inbound]
            if len(parents) != 1 or parents[0] is not prev:
                raise ExportError(
                    f"layer '{layer.name}': fedge export supports a single chain of layers "
                    "(Sequential, or a functional model without branches)"
                )
    return layers


def translate(model) -> list[TranslatedLayer]:
    layers = layer_chain(model)
    translated = []
    for i, layer in enumerate(layers):
        kind = layer.__class__.__name__
        if kind not in TRANSLATORS:
            raise ExportError(
                f"layer '{layer.name}' ({kind}) is not supported by fedge export; "
                f"supported layers: {', '.join(sorted(TRANSLATORS))}"
            )
        translated.append(TRANSLATORS[kind](layer, is_last=(i == len(layers) - 1)))
    return translated
