"""Export every zoo and corpus model; per model: parameters (travelling / total), .tflite
size (and as a multiple of all its float32 weights), bytes per float32 update, time per
training step (batch 32; `train` with mu 0 and no correction, the step devices take without
FedProx or SCAFFOLD) in LiteRT vs TensorFlow, and the parity max diff. The file's size is
also given gzip-compressed (``gzip``), as devices download it (``download``: the coordinator
serves the model with its travelling weights zeroed, since devices load each round's weights
from the checkpoint they download anyway, gzip-compressed; see docs/coordinator.md), and as
its graph alone (``graph``: the file less the weights' bytes, the operators and tensors of the
signatures, a cost per operator that does not grow with the weights).

The TensorFlow side is the same step as Keras would run it: the model's own call,
its compiled loss, TensorFlow's own gradients and the Keras optimizer, inside one
`tf.function` (no XLA), on the same CPU.

Both run with the same number of threads (--threads, default 1: what a device's
runtime uses; TensorFlow's intra-op pool is set to it).

    python bench/export_bench.py [--steps 50] [--threads 1] [--only NAME ...] [--markdown]
"""

from __future__ import annotations

import argparse
import gzip
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from model_export.ready import ready_interpreter  # noqa: E402
from protocol.tflite_file import without_weights  # noqa: E402


def _time(fn, steps: int) -> float:
    for _ in range(3):
        fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def _models():
    from model_export.corpus import CORPUS
    from model_export.zoo import ZOO

    for name, factory in ZOO.items():
        yield name, factory, 1e-4
    for entry in CORPUS:
        yield entry.name, entry.build, entry.tolerance


def _tf_step_seconds(model, x, y, steps: int) -> float:
    import tensorflow as tf

    optimizer = type(model.optimizer).from_config(model.optimizer.get_config())
    optimizer.build(model.trainable_variables)

    @tf.function(jit_compile=False)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply([tf.convert_to_tensor(g) for g in grads], model.trainable_variables)
        return loss

    tx, ty = tf.constant(x), tf.constant(y)
    return _time(lambda: step(tx, ty), steps)


def export_without_fedprox(model, name: str, tolerance: float):
    """The model exported as fedge did before FedProx (a train step with no proximal term),
    to measure what the term costs at mu = 0 (`--fedprox-cost`)."""
    import tensorflow as tf

    from model_export import exporter
    from model_export.lowering import builtin_lowering
    from model_export.training_graph import TrainingGraph

    class PlainGraph(TrainingGraph):
        def train(self, x, y, sample_weight, learning_rate, proximal_mu=None):
            from model_export.losses import per_example_loss

            with tf.GradientTape() as tape:
                out = self._keras.model(x, training=True)
                per_example = per_example_loss(self.loss_spec, out, y, self.batch_size)
                loss = tf.reduce_sum(per_example * sample_weight) / tf.maximum(tf.reduce_sum(sample_weight), 1.0)
            self.optimizer.apply(tape.gradient(loss, self.trainable), learning_rate[0])
            return {"loss": loss}

        def concrete_signatures(self):
            sigs = super().concrete_signatures()
            with builtin_lowering(self._keras.model, stochastic=self.stochastic):
                sigs["train"] = tf.function(lambda x, y, sample_weight, learning_rate: self.train(
                    x, y, sample_weight, learning_rate), autograph=False).get_concrete_function(*self.step_specs())
            return sigs

    table = exporter._signature_table
    original = exporter.TrainingGraph
    exporter.TrainingGraph = PlainGraph
    exporter._signature_table = lambda g: {**table(g), "train": {
        "inputs": ["x", "y", "sample_weight", "learning_rate"], "outputs": ["loss"]}}
    try:
        return exporter.export_model(model, name=name, parity_steps=0, tolerance=tolerance)
    finally:
        exporter.TrainingGraph, exporter._signature_table = original, table


def cpu_description() -> str:
    """The CPU and whether TensorFlow runs its oneDNN kernels: the TF column depends on both
    (TensorFlow turns oneDNN on by default only on some CPUs)."""
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        from tensorflow.python.util import _pywrap_util_port

        onednn = "on" if _pywrap_util_port.IsMklEnabled() else "off"
    except (ImportError, AttributeError):
        onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")
    return f"{model} ({os.cpu_count()} cores), TensorFlow oneDNN {onednn}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--only", nargs="*", help="model names to run (default: all)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table (docs/export.md's)")
    parser.add_argument("--threads", type=int, default=1, help="threads for LiteRT and for TensorFlow (default 1)")
    parser.add_argument("--fedprox-cost", action="store_true",
                        help="instead: LiteRT ms/step as exported before FedProx, train_plain (what devices "
                             "step with at mu = 0) and train at mu = 0 and mu = 1, per model")
    parser.add_argument("--dp-sgd-cost", action="store_true",
                        help="instead: LiteRT ms/step of train_plain and of train_dp (example-level DP-SGD, one "
                             "microbatch per example, and with --dp-microbatches M), and the file's size, per model")
    parser.add_argument("--dp-microbatches", type=int, default=8, help="with --dp-sgd-cost: the coarser M (default 8)")
    args = parser.parse_args()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from tqdm import tqdm

    from model_export.exporter import export_model
    from model_export.sample_data import random_batches, vocab_size

    rows = []
    selected = [m for m in _models() if not args.only or m[0] in args.only]
    if args.fedprox_cost:
        fedprox_cost(selected, args, export_model, random_batches, vocab_size)
        return
    if args.dp_sgd_cost:
        dp_sgd_cost(selected, args, export_model, random_batches, vocab_size)
        return
    for name, factory, tolerance in tqdm(selected, desc="export + time", unit="model", leave=False):
        model = factory()
        result = export_model(model, name=name, parity_steps=3, tolerance=tolerance)
        total = result.model_parameters
        m = result.manifest
        x, y = next(random_batches(m, 1, vocab=vocab_size(model)))
        w = np.ones(m.batch_size, np.float32)
        lr = np.full(1, m.optimizer["learning_rate"], np.float32)
        mu = np.zeros(1, np.float32)
        train = ready_interpreter(result.tflite, args.threads).get_signature_runner("train")
        lite = _time(lambda: train(x=x, y=y, sample_weight=w, learning_rate=lr, proximal_mu=mu), args.steps)
        tfs = _tf_step_seconds(model, x, y, args.steps)
        diff = max(result.parity.max_loss_diff, result.parity.max_weight_diff)
        rows.append((name, m.num_parameters, total, len(result.tflite), len(gzip.compress(result.tflite, 9)),
                     len(gzip.compress(without_weights(result.tflite), 9)), 4 * m.num_parameters, lite, tfs, diff,
                     result.parity.passed))
    print(f"{args.threads} thread(s) each, {args.steps} timed steps, batch 32; {cpu_description()}")
    if args.markdown:
        print("| model | params travelling / total | .tflite (x float32 weights) | gzip | download | graph | "
              "bytes per update (f32) | LiteRT ms/step | TF ms/step | LiteRT / TF | parity max diff |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, p, t, size, packed, served, upd, lite, tfs, diff, ok in rows:
            print(f"| {name} | {p:,} / {t:,} | {size / 1024:,.0f} KiB ({size / (4 * t):.2f}x) | "
                  f"{packed / 1024:,.0f} KiB ({packed / (4 * t):.2f}x) | {served / 1024:,.1f} KiB ({served / (4 * t):.2f}x) | "
                  f"{(size - 4 * t) / 1024:,.0f} KiB | "
                  f"{upd:,} ({100 * upd / (4 * t):.1f}%) | "
                  f"{lite * 1e3:.2f} | {tfs * 1e3:.2f} | {lite / tfs:.2f} | {diff:.1e}{'' if ok else ' FAIL'} |")
        return
    print(f"{'model':<26} {'travel/total':>17} {'tflite KiB':>10} {'x f32':>6} {'gzip x':>6} {'down x':>6} "
          f"{'graph KiB':>9} {'update B':>9} {'LiteRT ms':>9} {'TF ms':>7} {'ratio':>6} {'parity':>8}")
    for name, p, t, size, packed, served, upd, lite, tfs, diff, ok in rows:
        print(f"{name:<26} {p:>8,}/{t:<8,} {size / 1024:>10,.0f} {size / (4 * t):>6.2f} {packed / (4 * t):>6.2f} "
              f"{served / (4 * t):>6.2f} "
              f"{(size - 4 * t) / 1024:>9,.0f} {upd:>9,} {lite * 1e3:>9.2f} "
              f"{tfs * 1e3:>7.2f} "
              f"{lite / tfs:>6.2f} {diff:>8.1e}{'' if ok else ' FAIL'}")


def fedprox_cost(selected, args, export_model, random_batches, vocab_size) -> None:
    """What FedProx's and SCAFFOLD's terms cost the train step: interleaved timings (as exported
    before FedProx, train at mu = 0 as devices step without the terms, train at mu = 1,
    repeated) so that drift of the machine's speed hits all of them alike."""
    print(f"LiteRT ms/step, {args.threads} thread(s), {args.steps} steps x 5 rounds, best round; "
          f"{cpu_description()}")
    print(f"{'model':<26} {'no term':>9} {'train 0':>9} {'train 1':>9} {'0/none':>7} {'file KiB':>17}")
    for name, factory, tolerance in selected:
        model = factory()
        before = export_without_fedprox(model, name, tolerance)
        prox = export_model(model, name=name, parity_steps=0, tolerance=tolerance)
        m = prox.manifest
        x, y = next(random_batches(m, 1, vocab=vocab_size(model)))
        w = np.ones(m.batch_size, np.float32)
        lr = np.full(1, m.optimizer["learning_rate"], np.float32)
        t_before = ready_interpreter(before.tflite, args.threads).get_signature_runner("train")
        t_prox = ready_interpreter(prox.tflite, args.threads).get_signature_runner("train")
        runs = {"none": lambda: t_before(x=x, y=y, sample_weight=w, learning_rate=lr),
                "0": lambda: t_prox(x=x, y=y, sample_weight=w, learning_rate=lr, proximal_mu=np.zeros(1, np.float32)),
                "1": lambda: t_prox(x=x, y=y, sample_weight=w, learning_rate=lr, proximal_mu=np.ones(1, np.float32))}
        best = dict.fromkeys(runs, float("inf"))
        for _ in range(5):
            for k, fn in runs.items():
                best[k] = min(best[k], _time(fn, args.steps))
        print(f"{name:<26} {best['none'] * 1e3:>9.3f} {best['0'] * 1e3:>9.3f} "
              f"{best['1'] * 1e3:>9.3f} {best['0'] / best['none']:>7.3f} "
              f"{len(before.tflite) / 1024:>8,.0f} -> {len(prox.tflite) / 1024:<,.0f}", flush=True)


def dp_sgd_cost(selected, args, export_model, random_batches, vocab_size) -> None:
    """What example-level DP-SGD costs a device: train (mu 0) against train_dp with one
    microbatch per example and with --dp-microbatches M, interleaved, best of 5 rounds."""
    m_coarse = args.dp_microbatches
    print(f"LiteRT ms/step, {args.threads} thread(s), {args.steps} steps x 5 rounds, best round, batch 32; "
          f"{cpu_description()}")
    print(f"{'model':<18} {'plain':>8} {'dp (32)':>9} {f'dp ({m_coarse})':>9} {'x plain':>8} {'file KiB':>20}")
    for name, factory, tolerance in selected:
        model = factory()
        per_example = export_model(model, name=name, parity_steps=0, tolerance=tolerance, dp_microbatches=32)
        coarse = export_model(model, name=name, parity_steps=0, tolerance=tolerance, dp_microbatches=m_coarse)
        plain = export_model(model, name=name, parity_steps=0, tolerance=tolerance)
        m = per_example.manifest
        x, y = next(random_batches(m, 1, vocab=vocab_size(model)))
        fixed = {"x": x, "y": y, "sample_weight": np.ones(m.batch_size, np.float32),
                 "learning_rate": np.full(1, m.optimizer["learning_rate"], np.float32)}
        dp = {"proximal_mu": np.zeros(1, np.float32), "l2_norm_clip": np.ones(1, np.float32),
              "noise_multiplier": np.ones(1, np.float32),
              "noise": np.random.default_rng(0).standard_normal(m.dp_noise_size).astype(np.float32)}
        t_plain = ready_interpreter(plain.tflite, args.threads).get_signature_runner("train")
        t_dp = ready_interpreter(per_example.tflite, args.threads).get_signature_runner("train_dp")
        t_coarse = ready_interpreter(coarse.tflite, args.threads).get_signature_runner("train_dp")
        runs = {"plain": lambda: t_plain(**fixed, proximal_mu=dp["proximal_mu"]), "dp": lambda: t_dp(**fixed, **dp),
                "coarse": lambda: t_coarse(**fixed, **dp)}
        best = dict.fromkeys(runs, float("inf"))
        for _ in range(5):
            for k, fn in runs.items():
                best[k] = min(best[k], _time(fn, args.steps))
        print(f"{name:<18} {best['plain'] * 1e3:>8.3f} {best['dp'] * 1e3:>9.3f} {best['coarse'] * 1e3:>9.3f} "
              f"{best['dp'] / best['plain']:>8.1f} {len(plain.tflite) / 1024:>9,.0f} -> {len(per_example.tflite) / 1024:<,.0f}",
              flush=True)


if __name__ == "__main__":
    main()
