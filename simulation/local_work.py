"""A simulated device's local work for a round: real training of the exported model through
LiteRT on the device's own examples, from the checkpoint it was assigned; or, in system-only
mode, an update of the task's size and codec (and, for SecAgg, a delta inside the clip norm)
without training. The LiteRT model and recent checkpoints' weights are made once and shared by
every device (and by the simulation's evaluation of committed rounds)."""

from __future__ import annotations

import numpy as np

from protocol import codec
from protocol.dp import exact_l2_norm
from protocol.messages import Assignment, UploadMeta


class LocalWork:
    def __init__(self, seed: int, examples: int, system_only: bool, model_bytes: bytes, manifest, store, stats,
                 data=None):
        """``examples``: what each device reports without data; ``data``: the devices' examples
        (device_runtime.fleet.datasets.FederatedData), None in system-only mode."""
        self.seed, self.default_examples, self.system_only = seed, examples, system_only
        self.model_bytes, self.manifest, self.store, self.stats, self.data = model_bytes, manifest, store, stats, data
        self._model = None  # the LiteRT model, made on first use (training and evaluation)
        self._weights: dict[str, list[np.ndarray]] = {}
        self._payload: bytes | None = None  # system-only: one update of the task's size and codec

    @property
    def trains(self) -> bool:
        return self.data is not None and not self.system_only

    def examples(self, i: int) -> int:
        if self.data is None:
            return self.default_examples
        return len(self.data.shards[i][0])

    def payload_size(self, a: Assignment) -> int:
        return len(self._system_payload(a))

    def _system_payload(self, a: Assignment) -> bytes:
        if self._payload is None:
            spec = codec.CodecSpec.parse(a.plan.codec, a.plan.chunk_size)
            rng = np.random.default_rng([self.seed, 2])
            arrays = [rng.normal(0.0, 0.01, w.shape).astype(np.float32) for w in self.manifest.weights]
            self._payload = codec.encode(arrays, spec, rng, sparse_seed=a.plan.sparse_seed)
        return self._payload

    def update(self, i: int, a: Assignment, examples: int) -> tuple[bytes, UploadMeta]:
        """Device ``i``'s upload for assignment ``a``: its body and metadata."""
        if not self.trains:
            return self._system_payload(a), UploadMeta(examples, train_loss=1.0)
        result = self.result(i, a, examples)
        meta = UploadMeta(result.example_count, result.train_loss, result.eval_loss, result.eval_accuracy,
                          result.eval_count)
        return result.payload, meta

    def result(self, i: int, a: Assignment, examples: int):
        """The device's round of local training (LiteRT on its examples), or in system-only mode
        a delta of the model's size inside the clip norm."""
        from device_runtime.training import LocalResult, TrainJob, train_round

        if not self.trains:
            size = sum(w.size for w in self.manifest.weights)
            delta = np.random.default_rng([self.seed, 5, i, a.round]).normal(0.0, 0.01, size).astype(np.float32)
            norm = exact_l2_norm(delta)  # not BLAS: the same run on every CPU
            if a.plan.clip_norm > 0 and norm > a.plan.clip_norm:
                delta = (delta * np.float32(a.plan.clip_norm / norm)).astype(np.float32)
            return LocalResult(b"", examples, 1.0, 0.0, 0.0, 0, exact_l2_norm(delta), 4 * size, delta=delta)
        from device_runtime.example_store import split_holdout

        x, y = self.data.shards[i]
        local = split_holdout(x, y, 0.2, self.seed + i)
        result = train_round(self.litert(), self.weights_of(a.checkpoint_sha256),
                             TrainJob(a.plan, local.x_train, local.y_train, local.x_eval, local.y_eval,
                                      np.random.default_rng([self.seed, 3, i, a.round])))
        self.stats.trainings += 1
        return result

    def litert(self):
        if self._model is None:
            from device_runtime.litert_model import LocalModel

            self._model = LocalModel(self.model_bytes)
        return self._model

    def weights_of(self, sha: str) -> list[np.ndarray]:
        if sha not in self._weights:
            if len(self._weights) > 4:
                self._weights.clear()
            self._weights[sha] = codec.unflatten(codec.decode(self.store.blobs.read(sha)).values,
                                                 self.manifest.weight_shapes)
        return self._weights[sha]
