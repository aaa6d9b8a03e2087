"""Runs local training off the event loop, reusing interpreters.

Each worker thread keeps its own `LocalModel` per model hash (an interpreter is not
thread-safe, and building one per device would not fit 10,000 devices in memory);
devices borrow whichever thread is free. Decoded checkpoints are cached by hash too.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from device_runtime.example_store import LocalData
from device_runtime.litert_model import LocalModel
from device_runtime.training import LocalResult, TrainJob, train_round
from protocol import codec
from protocol.messages import Assignment, Plan


class TooLate(Exception):
    """A queued training job whose device can no longer report before its round's deadline."""


@dataclass(frozen=True)
class RoundBlobs:
    """The round's model file and checkpoint, with the digests the trainer caches them by."""

    model: bytes
    model_sha: str
    checkpoint: bytes
    checkpoint_sha: str


@dataclass(frozen=True)
class Deadline:
    """A job a worker reaches later than ``finish_by - expected_s`` (wall clock) is dropped."""

    finish_by: float | None = None
    expected_s: float = 0.0


class Trainer:
    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="fedge-train")
        self._local = threading.local()
        self._weights: OrderedDict[str, list[np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        self._step_s: dict[str, float] = {}
        self._batch: dict[str, int] = {}
        self.skipped_late = 0  # jobs dropped when a worker reached them after they could finish in time
        self.compute_s = 0.0  # training time actually spent, all workers together

    def _model(self, model_bytes: bytes, sha: str) -> LocalModel:
        models = getattr(self._local, "models", None)
        if models is None:
            models = self._local.models = {}
        if sha not in models:
            models[sha] = LocalModel(model_bytes)
            self._batch[sha] = models[sha].batch
        return models[sha]

    def _weights_for(self, checkpoint: bytes, sha: str, shapes) -> list[np.ndarray]:
        with self._lock:
            if sha in self._weights:
                return self._weights[sha]
        weights = codec.unflatten(codec.decode(checkpoint).values, shapes)
        with self._lock:
            self._weights[sha] = weights
            while len(self._weights) > 4:
                self._weights.popitem(last=False)
        return weights

    def _run(self, blobs: RoundBlobs, job: TrainJob, deadline: Deadline) -> tuple[LocalResult, float]:
        # Checked when a worker takes the job, not when it was queued: with hundreds of devices
        # selected at once the queue is long, and a job that can no longer finish would only
        # delay the jobs behind it (the next round's) past their own deadlines.
        if deadline.finish_by is not None and time.time() + deadline.expected_s > deadline.finish_by:
            with self._lock:
                self.skipped_late += 1
            raise TooLate(f"a worker was free only {max(0.0, deadline.finish_by - time.time()):.2f} s before the "
                          f"deadline; training takes about {deadline.expected_s:.2f} s")
        started = time.perf_counter()
        model = self._model(blobs.model, blobs.model_sha)
        weights = self._weights_for(blobs.checkpoint, blobs.checkpoint_sha, model.manifest.weight_shapes)
        result = train_round(model, weights, job)
        self._step_s[blobs.model_sha] = model.last_step_s
        spent = time.perf_counter() - started
        with self._lock:
            self.compute_s += spent
        return result, spent

    async def train(self, blobs: RoundBlobs, job: TrainJob, deadline: Deadline = Deadline()
                    ) -> tuple[LocalResult, float]:
        """(the round's result, the seconds of computation it took: queueing not included);
        TooLate instead of training when a worker reaches the job past its deadline."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._run, blobs, job, deadline)

    def _evaluate(self, model_bytes, model_sha, checkpoint, checkpoint_sha, data: LocalData, personal,
                  plan: Plan | None, rng) -> dict:
        model = self._model(model_bytes, model_sha)
        model.set_weights(self._weights_for(checkpoint, checkpoint_sha, model.manifest.weight_shapes))
        model.set_personal(personal if personal is not None else model.initial_personal)
        n = len(data.x_eval)
        loss, accuracy = model.evaluate(data.x_eval, data.y_eval)
        # Counts, as protocol.messages.EvaluationReport bounds them (correct <= examples).
        report = {"examples": n, "correct": min(float(n), accuracy * n), "loss_sum": max(0.0, loss * n)}
        steps = plan.personalize_steps if plan is not None else 0
        if steps and len(data.x_train):
            # Personalized evaluation: `steps` fine-tuning steps on the training split (batches
            # drawn in a random order, cycling over it), then the holdout again. Nothing is kept.
            take = rng.permutation(np.resize(np.arange(len(data.x_train)), steps * model.batch))
            model.train(data.x_train[take], data.y_train[take], 1, plan.learning_rate, None)
            loss, accuracy = model.evaluate(data.x_eval, data.y_eval)
            report.update(personalized_correct=min(float(n), accuracy * n), personalized_loss_sum=max(0.0, loss * n))
        return report

    async def evaluate(self, model_bytes: bytes, model_sha: str, checkpoint: bytes, checkpoint_sha: str,
                       data: LocalData, personal=None, plan: Plan | None = None, rng=None) -> dict:
        """Federated evaluation: the checkpoint (with this device's personal layers) on the
        local holdout, as counts."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, self._evaluate, model_bytes, model_sha, checkpoint,
                                          checkpoint_sha, data, personal, plan,
                                          rng if rng is not None else np.random.default_rng())

    def step_time_estimate(self, model_sha: str) -> float:
        return self._step_s.get(model_sha, 0.001)

    def batch_size_hint(self, assignment: Assignment) -> int:
        return self._batch.get(assignment.model_sha256, 32)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
