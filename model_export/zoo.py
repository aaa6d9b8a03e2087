"""Built-in models, each exportable builtins-only: `fedge export --zoo NAME`."""

from __future__ import annotations

from typing import Callable

import keras

NEXT_TOKEN_VOCAB = 32
NEXT_TOKEN_CONTEXT = 8


def digits_mlp() -> keras.Model:
    """8x8 handwritten digits (scikit-learn's data, flattened to 64 features)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="digits_mlp",
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.9),
                  loss="sparse_categorical_crossentropy")
    return model


def synthetic_mlp() -> keras.Model:
    """FedProx's Synthetic(alpha, beta) data: 60 features, 10 classes (`--dataset synthetic:A,B`)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((60,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="synthetic_mlp",
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="sparse_categorical_crossentropy")
    return model


def emnist_cnn() -> keras.Model:
    """28x28x1 images (EMNIST-shaped), 62 classes."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(62, activation="softmax"),
        ],
        name="emnist_cnn",
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss="sparse_categorical_crossentropy")
    return model


def next_token_lstm() -> keras.Model:
    """Keyboard next-token prediction: token ids -> Embedding -> LSTM -> Dense(vocab)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((NEXT_TOKEN_CONTEXT,), dtype="int32"),
            keras.layers.Embedding(NEXT_TOKEN_VOCAB, 16),
            keras.layers.LSTM(32),
            keras.layers.Dense(NEXT_TOKEN_VOCAB, activation="softmax"),
        ],
        name="next_token_lstm",
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-2), loss="sparse_categorical_crossentropy")
    return model


ZOO: dict[str, Callable[[], keras.Model]] = {
    "digits_mlp": digits_mlp,
    "synthetic_mlp": synthetic_mlp,
    "emnist_cnn": emnist_cnn,
    "next_token_lstm": next_token_lstm,
}
