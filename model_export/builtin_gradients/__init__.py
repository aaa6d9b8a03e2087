"""Gradients made of TFLite *builtin* ops only, for the TensorFlow ops whose own
gradient is not (ReluGrad, Conv2DBackpropFilter, MaxPoolGrad, ...).

`registry.builtin_gradients()` swaps them into TensorFlow's gradient registry for the
duration of an export; outside it TensorFlow is untouched.
"""
