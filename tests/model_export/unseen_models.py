"""Models outside the corpus, built only from covered ops, for `fedge export MODULE:FACTORY`."""

import keras
from keras import layers


def tiny_resnet() -> keras.Model:
    """A small ResNet-style classifier: strided 5x5 stem, overlapping max pool, two residual
    blocks (one projecting), average pooling, a hard-swish head, Nadam-free AdamW."""
    keras.utils.set_random_seed(3)
    x = keras.Input((20, 20, 3))
    h = layers.Conv2D(12, 5, strides=2, padding="same", use_bias=False)(x)
    h = layers.Activation("relu")(layers.BatchNormalization()(h))
    h = layers.MaxPooling2D(3, strides=1, padding="same")(h)
    for filters, stride in ((12, 1), (20, 2)):
        y = layers.Conv2D(filters, 3, strides=stride, padding="same", activation="elu")(h)
        y = layers.Conv2D(filters, 3, padding="same")(y)
        shortcut = h if stride == 1 else layers.Conv2D(filters, 1, strides=stride)(h)
        h = layers.ReLU()(layers.Add()([y, shortcut]))
    h = layers.AveragePooling2D(2, padding="same")(h)
    h = layers.Flatten()(h)
    h = layers.Dense(24, activation="hard_swish")(h)
    out = layers.Dense(7, activation="softmax")(layers.Dropout(0.1)(h))
    model = keras.Model(x, out, name="tiny_resnet")
    model.compile(optimizer=keras.optimizers.AdamW(2e-3, weight_decay=0.02), loss="sparse_categorical_crossentropy")
    return model
