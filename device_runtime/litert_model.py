"""A fedge `.tflite` driven through the stock LiteRT interpreter (no TensorFlow).

`LocalModel` wraps one interpreter: load global weights, run local epochs through the
``train`` signature (padding the last batch with zero sample weights), evaluate, and
read the weights back. It is not thread-safe; the fleet gives each worker thread its
own instances and reuses them across devices.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
from dataclasses import dataclass

from protocol.errors import ProtocolError
from protocol.manifest import Manifest
from protocol import codec
from protocol.tflite_file import read_initial_weights, read_manifest


def load_interpreter_class():
    """LiteRT's interpreter; tflite-runtime where LiteRT has no wheel for the platform."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "litert"
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter  # type: ignore

            return Interpreter, "tflite-runtime"
        except ImportError as exc:
            raise RuntimeError("no TFLite runtime: pip install 'fedge[device]' (ai-edge-litert) "
                               "or tflite-runtime") from exc


def runtime_version() -> str:
    try:
        from importlib.metadata import version

        return version("ai-edge-litert")
    except Exception:
        return "0"


_announced = False  # whether this process has opened its first interpreter
_first_open = threading.Lock()  # fd 2 is the process's: one thread redirects it at a time


def _quietly_the_first_time(open_model) -> None:
    """Run ``open_model()``. LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate
    for CPU." from C++ the first time a process invokes a model, which no setting reaches;
    that once, fd 2 points at /dev/null (FEDGE_NATIVE_LOGS=1 keeps it). On a failure it runs
    again with stderr open, so that LiteRT's own message shows with the exception."""
    global _announced
    if not _announced and os.environ.get("FEDGE_NATIVE_LOGS") != "1":
        with _first_open:
            if not _announced:
                failed = _run_silenced(open_model)
                _announced = True
                if not failed:
                    return
    open_model()


def _run_silenced(run) -> bool:
    """Run ``run()`` with fd 2 on /dev/null; whether it raised."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        run()
        return False
    except Exception:  # noqa: BLE001 - the caller runs it again where its native message is visible
        return True
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@dataclass(frozen=True)
class TrainProgress:
    loss: float  # the example-weighted mean training loss
    examples: int  # examples processed, over all epochs
    stopped: bool  # the time budget ended training before its epochs
    steps: int = 0  # optimizer steps taken (SCAFFOLD's K)



class LocalModel:
    def __init__(self, model_bytes: bytes, num_threads: int = 1):
        self.manifest: Manifest = read_manifest(model_bytes)
        if self.manifest.requires_flex:
            raise ProtocolError(
                f"this model needs TensorFlow Flex ops ({', '.join(self.manifest.flex_ops)}), "
                "which the stock LiteRT runtime on this device does not have", "needs_flex")
        self.batch = self.manifest.batch_size
        self.last_step_s = 0.0
        _quietly_the_first_time(lambda: self._open(model_bytes, num_threads))

    def _open(self, model_bytes: bytes, num_threads: int) -> None:
        interpreter_cls, _ = load_interpreter_class()
        self.interpreter = interpreter_cls(model_content=model_bytes, num_threads=num_threads)
        self._train = self.interpreter.get_signature_runner("train")
        self._evaluate = self.interpreter.get_signature_runner("evaluate")
        # float32[1] since fedge exports a rank-1 learning rate; () for older exports.
        self._learning_rate_shape = tuple(self._train.get_input_details()["learning_rate"]["shape"])
        self.supports_proximal = "proximal_mu" in self._train.get_input_details()
        # The step without FedProx's and SCAFFOLD's terms (train itself in older files).
        self._train_plain = self.interpreter.get_signature_runner(self.manifest.train_signature(0.0, False))
        self._control_set = False  # set_control since the last set_weights
        # DP-SGD's noise comes from the OS's entropy, never from a fleet's seeded generator:
        # noise anyone could replay would protect nothing.
        self.dp_noise = np.random.default_rng()
        self._get = self.interpreter.get_signature_runner("get_weights")
        self._set = self.interpreter.get_signature_runner("set_weights")
        # Personal layers (FedPer): trained here, never uploaded; the file's values until a
        # device loads its own (set_personal).
        self.initial_personal: list[np.ndarray] = []
        if self.manifest.personal:
            self._get_personal = self.interpreter.get_signature_runner("get_personal")
            self._set_personal = self.interpreter.get_signature_runner("set_personal")
            self.initial_personal = self.get_personal()
        # The file's embedded weights: the export's, a global model's (the admin download), or
        # zeros (the copy devices are served: each round's weights come with its checkpoint).
        embedded = codec.decode(read_initial_weights(model_bytes), [w.size for w in self.manifest.weights])
        self.set_weights(codec.unflatten(embedded.values, self.manifest.weight_shapes))

    def set_weights(self, weights: list[np.ndarray]) -> None:
        self._control_set = False  # set_weights zeroes the correction
        self._set(**{w.key: np.asarray(v, np.float32).reshape(w.shape) for w, v in zip(self.manifest.weights, weights)})

    def set_control(self, corrections: list[np.ndarray]) -> None:
        """SCAFFOLD: c - c_i per weight (manifest order); the trainable ones go to set_control.
        Call after set_weights, which zeroes it."""
        self.manifest.check_plan(0.0, scaffold=True)
        runner = self.interpreter.get_signature_runner("set_control")
        runner(**{f"c{i:03d}": np.asarray(v, np.float32).reshape(w.shape)
                  for i, (w, v) in enumerate(zip(self.manifest.weights, corrections)) if w.trainable})
        self._control_set = True

    def get_personal(self) -> list[np.ndarray]:
        out = self._get_personal() if self.manifest.personal else {}
        return [np.array(out[w.key], np.float32) for w in self.manifest.personal]

    def set_personal(self, weights: list[np.ndarray]) -> None:
        if not self.manifest.personal:
            return
        if len(weights) != len(self.manifest.personal):
            raise ValueError(f"{len(weights)} personal tensors for {len(self.manifest.personal)} in the model")
        self._set_personal(**{w.key: np.asarray(v, np.float32).reshape(w.shape)
                              for w, v in zip(self.manifest.personal, weights)})

    def get_weights(self) -> list[np.ndarray]:
        out = self._get()
        return [np.array(out[w.key], np.float32) for w in self.manifest.weights]

    def _batches(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator | None):
        n = len(x)
        order = rng.permutation(n) if rng is not None else np.arange(n)
        for start in range(0, n, self.batch):
            idx = order[start : start + self.batch]
            pad = self.batch - len(idx)
            weight = np.ones(self.batch, np.float32)
            if pad:
                weight[len(idx):] = 0.0
                idx = np.concatenate([idx, np.repeat(idx[:1], pad)])
            yield x[idx], y[idx], weight, len(idx) - pad

    def train(self, x: np.ndarray, y: np.ndarray, epochs: int, learning_rate: float,
              rng: np.random.Generator, proximal_mu: float = 0.0, stop_after_s: float = 0.0,
              dp_sgd: tuple[float, float] | None = None) -> TrainProgress:
        """Local epochs (FedProx's term with ``proximal_mu`` > 0); with ``stop_after_s`` > 0
        training stops at the first batch boundary after that many seconds. ``dp_sgd`` =
        (clip, noise multiplier): every step is the file's train_dp (example-level DP-SGD),
        fed fresh standard normal noise from `dp_noise`."""
        x = x.astype(self.manifest.input.dtype, copy=False)
        y = y.astype(self.manifest.label.dtype, copy=False)
        lr = np.full(self._learning_rate_shape, learning_rate, np.float32)
        self.manifest.check_plan(proximal_mu, dp_sgd=dp_sgd is not None)
        name = self.manifest.train_signature(proximal_mu, self._control_set, dp_sgd is not None)
        step = {"train_plain": self._train_plain, "train": self._train}.get(name) or \
            self.interpreter.get_signature_runner(name)
        takes_mu = "proximal_mu" in step.get_input_details()
        extra = {"proximal_mu": np.full(1, proximal_mu, np.float32)} if takes_mu else {}
        noise_size = 0
        if dp_sgd is not None:
            extra.update(l2_norm_clip=np.full(1, dp_sgd[0], np.float32),
                         noise_multiplier=np.full(1, dp_sgd[1], np.float32))
            noise_size = self.manifest.dp_noise_size
        total, count, steps = 0.0, 0, 0
        started = time.perf_counter()
        stopped = False
        for _ in range(epochs):
            for xb, yb, wb, real in self._batches(x, y, rng):
                if stop_after_s and time.perf_counter() - started >= stop_after_s:
                    stopped = True
                    break
                if noise_size:
                    extra["noise"] = self.dp_noise.standard_normal(noise_size, np.float32)
                loss = float(step(x=xb, y=yb, sample_weight=wb, learning_rate=lr, **extra)["loss"])
                total += loss * real
                count += real
                steps += 1
            if stopped:
                break
        if steps:
            self.last_step_s = (time.perf_counter() - started) / steps
        return TrainProgress(total / max(count, 1), count, stopped, steps)

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """(mean loss, accuracy) over the examples."""
        if len(x) == 0:
            return 0.0, 0.0
        x = x.astype(self.manifest.input.dtype, copy=False)
        y = y.astype(self.manifest.label.dtype, copy=False)
        loss_sum = correct = 0.0
        for xb, yb, wb, _ in self._batches(x, y, None):
            out = self._evaluate(x=xb, y=yb, sample_weight=wb)
            loss_sum += float(out["loss_sum"])
            correct += float(out["correct"])
        return loss_sum / len(x), correct / len(x)


class InferenceModel:
    """A model release opened for inference: only its `infer` signature is used (a release
    exposes infer and evaluate; protocol.tflite_file.inference_only), its weights the file's
    own (or, for a file that keeps them only in its metadata, set once here)."""

    def __init__(self, model_bytes: bytes, num_threads: int = 1):
        self.manifest: Manifest = read_manifest(model_bytes)
        interpreter_cls, _ = load_interpreter_class()
        holder = {}
        _quietly_the_first_time(lambda: holder.setdefault(
            "interpreter", interpreter_cls(model_content=model_bytes, num_threads=num_threads)))
        self.interpreter = holder["interpreter"]
        self.signatures = set(self.interpreter.get_signature_list())
        self._infer = self.interpreter.get_signature_runner("infer")
        if "set_weights" in self.signatures:
            embedded = codec.decode(read_initial_weights(model_bytes), [w.size for w in self.manifest.weights])
            weights = codec.unflatten(embedded.values, self.manifest.weight_shapes)
            setter = self.interpreter.get_signature_runner("set_weights")
            setter(**{w.key: np.asarray(v, np.float32).reshape(w.shape) for w, v in zip(self.manifest.weights, weights)})

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The model's outputs (its `infer` signature) for each example, a batch at a time."""
        x = x.astype(self.manifest.input.dtype, copy=False)
        batch = tuple(self._infer.get_input_details()["x"]["shape"])[0] or len(x)
        outputs = []
        for start in range(0, len(x), batch):
            chunk = x[start:start + batch]
            if len(chunk) < batch:  # the signature's batch is fixed: pad the last one
                chunk = np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]), chunk.dtype)])
            outputs.append(self._infer(x=chunk)["output"][:min(batch, len(x) - start)])
        return np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)
