"""Keras model -> trainable `.tflite` (train/infer/evaluate/get_weights/set_weights)."""
