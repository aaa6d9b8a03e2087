"""The export coverage corpus: models a practitioner brings, each exported
builtins-only, trained in LiteRT and checked against Keras (tests/model_export/
test_corpus.py, bench/export_bench.py, the table in docs/export.md).

Inputs are small so the whole corpus exports in minutes on two cores; the layers,
blocks and training setups are the ones real on-device models use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
from keras import layers, ops


@dataclass(frozen=True)
class CorpusModel:
    name: str
    build: Callable[[], keras.Model]
    covers: str
    # Parity tolerance (see model_export.parity). Only the end-to-end MobileNetV2 needs more
    # than the default: TFLite's float kernels differ from TensorFlow's at float32 rounding,
    # and 52 randomly initialised layers with batch statistics amplify that to about 0.6%
    # of each step's update (the same graph run by TensorFlow agrees to 1e-4).
    tolerance: float = 1e-4


def _seed() -> None:
    keras.utils.set_random_seed(0)


def _sequential(name: str, stack: list, optimizer, loss) -> keras.Model:
    """A seeded, compiled Sequential model."""
    _seed()
    model = keras.Sequential(stack, name=name)
    model.compile(optimizer=optimizer, loss=loss)
    return model


def two_branch_mlp() -> keras.Model:
    _seed()
    x = keras.Input((20,))
    a = layers.Dense(32, activation="relu")(x)
    b = layers.Dense(16, activation="tanh")(x)
    out = layers.Dense(3, activation="softmax")(layers.Concatenate()([a, b]))
    model = keras.Model(x, out, name="two_branch_mlp")
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                  loss="sparse_categorical_crossentropy")
    return model


def conv_bn_gap() -> keras.Model:
    _seed()
    x = keras.Input((16, 16, 3))
    h = layers.Conv2D(8, 3, padding="same", use_bias=False)(x)
    h = layers.ReLU()(layers.BatchNormalization()(h))
    h = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(h)
    h = layers.ReLU()(layers.BatchNormalization()(h))
    out = layers.Dense(5, activation="softmax")(layers.GlobalAveragePooling2D()(h))
    model = keras.Model(x, out, name="conv_bn_gap")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    return model


def _inverted_residual(h, expand: int, name: str):
    c = h.shape[-1]
    y = layers.Conv2D(c * expand, 1, use_bias=False, name=f"{name}_expand")(h)
    y = layers.ReLU(6.0)(layers.BatchNormalization(name=f"{name}_expand_bn")(y))
    y = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_depthwise")(y)
    y = layers.ReLU(6.0)(layers.BatchNormalization(name=f"{name}_depthwise_bn")(y))
    y = layers.Conv2D(c, 1, use_bias=False, name=f"{name}_project")(y)
    y = layers.BatchNormalization(name=f"{name}_project_bn")(y)
    return layers.Add(name=f"{name}_add")([h, y])


def residual_depthwise() -> keras.Model:
    _seed()
    x = keras.Input((16, 16, 3))
    h = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(x)
    h = _inverted_residual(h, 3, "block1")
    h = layers.AveragePooling2D(2)(h)
    out = layers.Dense(4, activation="softmax")(layers.Flatten()(h))
    model = keras.Model(x, out, name="residual_depthwise")
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss="sparse_categorical_crossentropy")
    return model


def separable_cnn() -> keras.Model:
    return _sequential("separable_cnn", [
        keras.Input((16, 16, 3)),
        layers.SeparableConv2D(8, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(3, strides=2, padding="same"),
        layers.SeparableConv2D(16, 3, depth_multiplier=2, activation="relu"),
        layers.GlobalMaxPooling2D(),
        layers.Dense(6, activation="softmax"),
    ], keras.optimizers.Adagrad(0.05), "sparse_categorical_crossentropy")


def conv1d_text() -> keras.Model:
    return _sequential("conv1d_text", [
        keras.Input((24,), dtype="int32"),
        layers.Embedding(200, 16),
        layers.Conv1D(24, 5, activation="relu"),
        layers.MaxPooling1D(2),
        layers.Conv1D(24, 3, padding="same", activation="relu"),
        layers.GlobalMaxPooling1D(),
        layers.Dense(2, activation="softmax"),
    ], keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")


def gru_classifier() -> keras.Model:
    return _sequential("gru_classifier", [
        keras.Input((10,), dtype="int32"),
        layers.Embedding(50, 12),
        layers.GRU(16),
        layers.Dense(4, activation="softmax"),
    ], keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")


def bidirectional_lstm() -> keras.Model:
    return _sequential("bidirectional_lstm", [
        keras.Input((10,), dtype="int32"),
        layers.Embedding(50, 12),
        layers.Bidirectional(layers.LSTM(12, return_sequences=True)),
        layers.GlobalAveragePooling1D(),
        layers.Dense(3, activation="softmax"),
    ], keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")


def bidirectional_gru() -> keras.Model:
    return _sequential("bidirectional_gru", [
        keras.Input((8, 6)),
        layers.Bidirectional(layers.GRU(10)),
        layers.Dense(1),
    ], keras.optimizers.SGD(0.01), "mse")


def sequence_tagger() -> keras.Model:
    return _sequential("sequence_tagger", [
        keras.Input((12,), dtype="int32"),
        layers.Embedding(40, 8),
        layers.LSTM(16, return_sequences=True),
        layers.Dense(5, activation="softmax"),
    ], keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")


def layernorm_gelu() -> keras.Model:
    _seed()
    x = keras.Input((32,))
    h = layers.Dense(64)(x)
    h = layers.Activation("gelu")(layers.LayerNormalization()(h))
    h = layers.Dense(32, activation="swish")(h)
    h = layers.Add()([x, h])
    out = layers.Dense(4)(layers.LayerNormalization()(h))
    model = keras.Model(x, out, name="layernorm_gelu")
    model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@keras.saving.register_keras_serializable(package="fedge_corpus")
class GatedResidual(layers.Layer):
    """A custom layer written with keras.ops: x + sigmoid(x W_g) * tanh(x W_v), RMS-scaled."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def build(self, input_shape):
        d = input_shape[-1]
        self.w_gate = self.add_weight(shape=(d, d), initializer="glorot_uniform", name="w_gate")
        self.w_value = self.add_weight(shape=(d, d), initializer="glorot_uniform", name="w_value")
        self.scale = self.add_weight(shape=(d,), initializer="ones", name="scale")

    def call(self, x):
        gated = ops.sigmoid(ops.matmul(x, self.w_gate)) * ops.tanh(ops.matmul(x, self.w_value))
        y = x + gated
        rms = ops.sqrt(ops.mean(ops.square(y), axis=-1, keepdims=True) + 1e-6)
        return y / rms * self.scale


def custom_keras_ops() -> keras.Model:
    return _sequential("custom_keras_ops", [
        keras.Input((16,)),
        layers.Dense(24, activation="elu"),
        GatedResidual(),
        layers.Dense(3, activation="softmax"),
    ], keras.optimizers.SGD(0.05, momentum=0.5), "sparse_categorical_crossentropy")


def _frozen_base_head(base: keras.Model, name: str, classes: int = 5) -> keras.Model:
    base.trainable = False
    x = keras.Input(base.input.shape[1:])
    h = base(x, training=False)
    h = layers.GlobalAveragePooling2D()(h)
    h = layers.Dropout(0.2)(h)
    out = layers.Dense(classes, activation="softmax")(h)
    model = keras.Model(x, out, name=name)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    return model


def mobilenet_v2_frozen() -> keras.Model:
    _seed()
    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None)
    return _frozen_base_head(base, "mobilenet_v2_frozen")


def mobilenet_v3_small_frozen() -> keras.Model:
    _seed()
    base = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), include_top=False, weights=None,
                                               include_preprocessing=False)
    return _frozen_base_head(base, "mobilenet_v3_small_frozen")


def mobilenet_v2_finetune() -> keras.Model:
    _seed()
    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None)
    x = keras.Input((32, 32, 3))
    out = layers.Dense(5, activation="softmax")(layers.GlobalAveragePooling2D()(base(x)))
    model = keras.Model(x, out, name="mobilenet_v2_finetune")
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9), loss="sparse_categorical_crossentropy")
    return model


def huber_regression() -> keras.Model:
    return _sequential("huber_regression", [
        keras.Input((10,)),
        layers.Dense(32, activation="relu"),
        layers.Dense(16, activation="softplus"),
        layers.Dense(2),
    ], keras.optimizers.SGD(0.02), keras.losses.Huber(delta=0.5))


def mae_activations() -> keras.Model:
    return _sequential("mae_activations", [
        keras.Input((12,)),
        layers.Dense(24),
        layers.LeakyReLU(0.1),
        layers.Dense(24, activation="selu"),
        layers.Dense(16, activation="sigmoid"),
        layers.Dense(3),
    ], keras.optimizers.RMSprop(1e-3, momentum=0.5, centered=True), "mae")


def binary_classifier() -> keras.Model:
    return _sequential("binary_classifier", [
        keras.Input((20,)),
        layers.Dense(16, activation="relu"),
        layers.Dropout(0.3),
        layers.Dense(1, activation="sigmoid"),
    ], keras.optimizers.Adam(1e-2), "binary_crossentropy")


def multilabel_logits() -> keras.Model:
    return _sequential("multilabel_logits", [
        keras.Input((20,)),
        layers.Dense(16, activation="tanh"),
        layers.Dense(4),
    ], keras.optimizers.Adagrad(0.1), keras.losses.BinaryCrossentropy(from_logits=True))


def one_hot_classifier() -> keras.Model:
    return _sequential("one_hot_classifier", [
        keras.Input((8, 8, 1)),
        layers.Conv2D(8, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(10, activation="softmax"),
    ], keras.optimizers.Adam(1e-3, amsgrad=True), "categorical_crossentropy")


def shared_layer_siamese() -> keras.Model:
    _seed()
    encoder = keras.Sequential([keras.Input((8,)), layers.Dense(16, activation="relu")], name="encoder")
    x = keras.Input((16,))
    left, right = layers.Lambda(lambda t: t[:, :8])(x), layers.Lambda(lambda t: t[:, 8:])(x)
    diff = layers.Subtract()([encoder(left), encoder(right)])
    out = layers.Dense(2, activation="softmax")(layers.Multiply()([diff, diff]))
    model = keras.Model(x, out, name="shared_layer_siamese")
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    return model


def conv_autoencoder() -> keras.Model:
    return _sequential("conv_autoencoder", [
        keras.Input((8, 8, 2)),
        layers.Conv2D(8, 3, strides=2, padding="same", activation="relu"),
        layers.Conv2DTranspose(2, 3, strides=2, padding="same"),
    ], keras.optimizers.Adam(1e-3), "mse")


def dilated_cnn() -> keras.Model:
    return _sequential("dilated_cnn", [
        keras.Input((12, 12, 2)),
        layers.Conv2D(6, 3, dilation_rate=2, padding="same", activation="relu"),
        layers.Conv2D(4, 3, dilation_rate=(2, 1), activation="relu"),
        layers.GlobalAveragePooling2D(),
        layers.Dense(3, activation="softmax"),
    ], keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")


def mobile_block_adam() -> keras.Model:
    """The block that first failed parity on an AMD machine (Adam 1e-3 stepping a
    rounding-level gradient by a full step; see model_export.parity)."""
    _seed()
    x = keras.Input((16, 16, 3))
    h = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(x)
    h = layers.ReLU(6.0)(layers.BatchNormalization()(h))
    y = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(h)
    y = layers.ReLU(6.0)(layers.BatchNormalization()(y))
    y = layers.BatchNormalization()(layers.Conv2D(8, 1, use_bias=False)(y))
    h = layers.AveragePooling2D(2)(layers.Add()([h, y]))
    out = layers.Dense(4, activation="softmax")(layers.Flatten()(h))
    model = keras.Model(x, out, name="mobile_block_adam")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    return model


class _PositionEmbedding(layers.Layer):
    """A private helper class: Keras names it `__position_embedding`, which TensorFlow's
    SavedModel writer refuses as a scope (model_export.convert.scope_safe_variable_names)."""

    def build(self, input_shape):
        self.positions = self.add_weight(shape=tuple(input_shape[1:]), initializer="random_normal")

    def call(self, x):
        return x + self.positions


def position_embedding_attention() -> keras.Model:
    _seed()
    x = keras.Input((8,), dtype="int32")
    h = _PositionEmbedding()(layers.Embedding(20, 16)(x))
    h = layers.MultiHeadAttention(num_heads=2, key_dim=8)(h, h)
    out = layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling1D()(h))
    model = keras.Model(x, out, name="position_embedding_attention")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    return model


class _LayerScale(layers.Layer):
    def build(self, input_shape):
        self.gamma = self.add_weight(shape=(input_shape[-1],), initializer=keras.initializers.Constant(0.1))

    def call(self, x):
        return x * self.gamma


def convnext_layer_scale() -> keras.Model:
    _seed()
    x = keras.Input((8, 8, 8))
    y = layers.LayerNormalization()(layers.DepthwiseConv2D(3, padding="same")(x))
    y = layers.Dense(8)(layers.Dense(16, activation="gelu")(y))
    h = layers.Add()([x, _LayerScale()(y)])
    out = layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling2D()(h))
    model = keras.Model(x, out, name="convnext_layer_scale")
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="sparse_categorical_crossentropy")
    return model


CORPUS: list[CorpusModel] = [
    CorpusModel("two_branch_mlp", two_branch_mlp, "functional branches, Concatenate, SGD Nesterov"),
    CorpusModel("conv_bn_gap", conv_bn_gap, "Conv2D + BatchNormalization + GlobalAveragePooling2D"),
    CorpusModel("residual_depthwise", residual_depthwise,
                "inverted residual: DepthwiseConv2D, ReLU6, Add, AveragePooling2D; RMSprop"),
    CorpusModel("separable_cnn", separable_cnn,
                "SeparableConv2D, overlapping MaxPooling2D, GlobalMaxPooling2D; Adagrad"),
    CorpusModel("conv1d_text", conv1d_text, "Embedding + Conv1D + MaxPooling1D text classifier"),
    CorpusModel("gru_classifier", gru_classifier, "GRU"),
    CorpusModel("bidirectional_lstm", bidirectional_lstm, "Bidirectional LSTM, GlobalAveragePooling1D"),
    CorpusModel("bidirectional_gru", bidirectional_gru, "Bidirectional GRU regression"),
    CorpusModel("sequence_tagger", sequence_tagger, "per-token labels (LSTM return_sequences)"),
    CorpusModel("layernorm_gelu", layernorm_gelu, "LayerNormalization, GELU, swish, residual; AdamW; logits"),
    CorpusModel("custom_keras_ops", custom_keras_ops, "a custom layer written with keras.ops; ELU"),
    CorpusModel("mobilenet_v2_frozen", mobilenet_v2_frozen, "keras.applications.MobileNetV2(alpha=0.35) frozen + head"),
    CorpusModel("mobilenet_v3_small_frozen", mobilenet_v3_small_frozen,
                "keras.applications.MobileNetV3Small frozen + head (hard-swish, squeeze-excite)"),
    CorpusModel("mobilenet_v2_finetune", mobilenet_v2_finetune, "MobileNetV2(alpha=0.35) fine-tuned end to end",
                tolerance=0.1),
    CorpusModel("huber_regression", huber_regression, "Huber loss regression, softplus"),
    CorpusModel("mae_activations", mae_activations, "MAE; LeakyReLU, SELU, sigmoid; centered RMSprop with momentum"),
    CorpusModel("binary_classifier", binary_classifier, "binary cross-entropy on a sigmoid, Dropout"),
    CorpusModel("multilabel_logits", multilabel_logits, "binary cross-entropy from logits, 4 labels; Adagrad"),
    CorpusModel("one_hot_classifier", one_hot_classifier, "categorical cross-entropy (one-hot); Adam amsgrad"),
    CorpusModel("shared_layer_siamese", shared_layer_siamese, "a nested model applied twice (shared weights), Lambda"),
    CorpusModel("conv_autoencoder", conv_autoencoder, "Conv2DTranspose autoencoder, MSE"),
    CorpusModel("dilated_cnn", dilated_cnn, "dilated Conv2D (rates 2 and (2, 1))"),
    CorpusModel("mobile_block_adam", mobile_block_adam,
                "strided Conv2D + BatchNormalization + ReLU6, depthwise residual block, AveragePooling2D; Adam"),
    CorpusModel("position_embedding_attention", position_embedding_attention,
                "a private custom layer (class _PositionEmbedding) before MultiHeadAttention"),
    CorpusModel("convnext_layer_scale", convnext_layer_scale,
                "ConvNeXt-style block with a private per-channel scale (class _LayerScale); AdamW"),
]
