"""For each zoo model: .tflite size, time per `train` step (batch 32) in LiteRT and in
TensorFlow (tf.function of the same exported graph) on this CPU, and their ratio.

    python bench/export_bench.py [--steps 200]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def _time(fn, steps: int) -> float:
    fn()
    fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from model_export.exporter import export_model
    from model_export.sample_data import random_batches, vocab_size
    from model_export.training_graph import TrainingGraph
    from model_export.zoo import ZOO

    print(f"{'model':<16} {'params':>8} {'tflite KiB':>10} {'LiteRT ms/step':>15} {'TF ms/step':>11} {'TF/LiteRT':>9}")
    for name, factory in ZOO.items():
        model = factory()
        result = export_model(model, name=name, parity_steps=0)
        m = result.manifest
        x, y = next(random_batches(m, 1, vocab=vocab_size(model)))
        w = np.ones(m.batch_size, np.float32)
        lr = np.full(1, m.optimizer["learning_rate"], np.float32)
        train = Interpreter(model_content=result.tflite).get_signature_runner("train")
        lite = _time(lambda: train(x=x, y=y, sample_weight=w, learning_rate=lr), args.steps)
        graph = TrainingGraph(model, batch_size=m.batch_size)
        step = tf.function(graph.train)
        tx, ty, tw = tf.constant(x), tf.constant(y), tf.constant(w)
        tfs = _time(lambda: step(tx, ty, tw, tf.constant(lr)), args.steps)
        print(f"{name:<16} {m.num_parameters:>8,} {len(result.tflite) / 1024:>10.1f} {lite * 1e3:>15.3f} "
              f"{tfs * 1e3:>11.3f} {tfs / lite:>9.2f}")


if __name__ == "__main__":
    main()
