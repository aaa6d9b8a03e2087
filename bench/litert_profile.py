"""Where a LiteRT train step's time goes, kernel by kernel: Linux perf samples the step's
loop (LiteRT's own profiler is not reachable from the Python wheel: its C API can read a
compiled model's profiler, but no option the wheel passes turns profiling on), and each
sample is charged to the LiteRT kernel on its stack: a TFLite builtin op's kernel by its
namespace (`tflite::ops::builtin::pad::...` is PAD), an XNNPACK kernel by its micro-kernel
family (gemm, vmul, pad, transpose, copy, ...). Beside it, the train signature's operators
by type with the elements they write per step, and the same step in TensorFlow.

    python bench/litert_profile.py [--model emnist_cnn] [--steps 300] [--threads 1]

Needs `perf` (Debian's linux-perf) and kernel.perf_event_paranoid <= 2 for one's own process.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import cpu_name  # noqa: E402

# XNNPACK micro-kernel and compute names -> what the graph asked for. Checked in order.
XNN_FAMILIES = [
    (r"gemm|igemm|gebp", "XNNPACK gemm (conv, matmul, fully connected)"),
    (r"_vmul", "XNNPACK MUL"), (r"_vadd", "XNNPACK ADD"), (r"_vsub", "XNNPACK SUB"),
    (r"_vdiv|_vrdiv", "XNNPACK DIV"), (r"_vclamp|_vmax|_vmin|relu", "XNNPACK clamp/max/min"),
    (r"pad", "XNNPACK PAD"), (r"transpose", "XNNPACK TRANSPOSE"), (r"maxpool", "XNNPACK MAX_POOL_2D"),
    (r"rsum|reduce|rmax", "XNNPACK reductions"), (r"vsqrt|vrsqrt", "XNNPACK SQRT"),
    (r"memcpy|memmove|copy|univector_strided", "XNNPACK copies (RESHAPE, CONCATENATION, SLICE)"),
]


def _classify(stack: list[str]) -> str:
    """A sample's kernel: the leaf-most TFLite builtin op, or the XNNPACK family of its leaf."""
    for sym in stack:  # leaf first
        m = re.match(r"tflite::ops::builtin::(\w+)::", sym)
        if m:
            return f"TFLite builtin {m.group(1).upper()}"
        if sym.startswith("tflite::optimized_ops::") or sym.startswith("tflite::reference_ops::"):
            continue
    if any("xnn_" in s or "pthreadpool" in s for s in stack):
        for sym in stack:
            for pattern, family in XNN_FAMILIES:
                if re.search(pattern, sym):
                    return family
        return "XNNPACK other"
    if any("InterpreterWrapper" in s or "SignatureRunner" in s for s in stack):
        return "runtime (tensor copies in/out, dispatch)"
    if any(s.startswith("_PyEval") or s.startswith("Py") for s in stack):
        return "Python (the signature runner's wrapper)"
    return "other"


def _perf_samples(pid: int, seconds: float, out: str) -> list[list[str]]:
    subprocess.run(["perf", "record", "-q", "-F", "1999", "-g", "-p", str(pid), "-o", out, "--", "sleep",
                    f"{seconds:g}"], check=True, capture_output=True)
    text = subprocess.run(["perf", "script", "-i", out, "-F", "ip,sym"], check=True, capture_output=True,
                          text=True).stdout
    samples, stack = [], []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            if stack:
                samples.append(stack)
            stack = []
            continue
        parts = line.split(None, 1)
        stack.append(parts[1] if len(parts) > 1 else "[unknown]")
    if stack:
        samples.append(stack)
    return samples


def _train_ops(tflite: bytes) -> list[tuple[str, int, int]]:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(tflite, 0))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    graph = next(model.subgraphs[s.subgraphIndex] for s in model.signatureDefs if s.signatureKey == b"train")
    count, elems = collections.Counter(), collections.Counter()
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")
        count[name] += 1
        if len(op.outputs) and graph.tensors[op.outputs[0]].shape is not None:
            elems[name] += int(np.prod(graph.tensors[op.outputs[0]].shape))
    return [(name, n, elems[name]) for name, n in count.most_common()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="emnist_cnn", help="a zoo model (model_export.zoo)")
    parser.add_argument("--steps", type=int, default=300, help="train steps under perf")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from export_bench import _tf_step_seconds, _time
    from model_export.exporter import export_model
    from model_export.ready import ready_interpreter
    from model_export.sample_data import random_batches
    from model_export.zoo import ZOO

    model = ZOO[args.model]()
    result = export_model(model, name=args.model, parity_steps=0, tolerance=1e-4)
    m = result.manifest
    x, y = next(random_batches(m, 1, vocab=None))
    feeds = dict(x=x, y=y, sample_weight=np.ones(m.batch_size, np.float32),
                 learning_rate=np.full(1, m.optimizer["learning_rate"], np.float32),
                 proximal_mu=np.zeros(1, np.float32))
    train = ready_interpreter(result.tflite, args.threads).get_signature_runner("train")
    lite = _time(lambda: train(**feeds), 50)
    tfs = _tf_step_seconds(model, x, y, 50)

    seconds = args.steps * lite
    done = threading.Event()

    def loop():
        while not done.is_set():
            train(**feeds)

    worker = threading.Thread(target=loop)
    worker.start()
    time.sleep(0.2)
    with tempfile.TemporaryDirectory() as tmp:
        samples = _perf_samples(os.getpid(), seconds, os.path.join(tmp, "perf.data"))
    done.set()
    worker.join()
    # Only the stepping thread's samples: those that went through the interpreter.
    stepping = [s for s in samples if any("Invoke" in f or "SignatureRunner" in f or "interpreter_wrapper" in f
                                          for f in s)]
    kinds = collections.Counter(_classify(s) for s in stepping)
    total = sum(kinds.values()) or 1
    print(f"{args.model}, batch {m.batch_size}, {args.threads} thread(s); {cpu_name()}")
    print(f"train step: LiteRT {lite * 1e3:.2f} ms, TensorFlow {tfs * 1e3:.2f} ms (ratio {lite / tfs:.2f})")
    print(f"\n{'LiteRT kernel':<52} {'share':>6} {'ms/step':>8}   ({len(stepping)} perf samples)")
    for kind, n in kinds.most_common():
        print(f"{kind:<52} {100 * n / total:>5.1f}% {lite * 1e3 * n / total:>8.2f}")
    print(f"\n{'train signature operator':<28} {'count':>5} {'elements written':>17}")
    for name, n, elems in _train_ops(result.tflite):
        print(f"{name:<28} {n:>5} {elems:>17,}")


if __name__ == "__main__":
    main()
