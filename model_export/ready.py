"""An exported `.tflite` opened the way a device opens it, ready for `train` steps.

The file's optimizer slots, FedProx anchors and SCAFFOLD corrections start as copies of
their weights (so they cost the file no bytes; see `training_graph`): `set_weights` puts
them in their real starting state, as devices do before every round. Anything that steps
a file directly (the parity check, tests, benchmarks) opens it here.
"""

from __future__ import annotations


def ready_interpreter(tflite: bytes, num_threads: int | None = None):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite, num_threads=num_threads)
    interp.get_signature_runner("set_weights")(**interp.get_signature_runner("get_weights")())
    return interp
