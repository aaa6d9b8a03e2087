"""What a device downloads as the round's checkpoint: the float32 checkpoint itself, or (the
task's `download_codec`) the same weights in a quantized codec, about 4x (q8) or 7.5x (q4)
fewer bytes. Devices decode any codec, Python and Java alike, so nothing changes on them.

The quantized blob is a pure function of the checkpoint: the stochastic rounding and the
rotation are seeded from the checkpoint's digest, so every replica that serves the same
checkpoint serves the same bytes under the same digest. Each replica remembers the blobs it
made and deletes a task's older ones once KEEP_PER_TASK newer exist and no other task still
sends devices to them (two tasks on one model share their first one; devices download the
checkpoint when they are assigned; an asynchronous assignment pins at most max_staleness
versions back, and a late download of a deleted one fails that device's round, nothing else).

The model too travels as a blob made from the task's: the same file with its travelling
weights' bytes zeroed (`model_for`). A device loads every round's weights from the checkpoint
it downloads anyway (set_weights before training or evaluating, both runtimes), so the file's
own, the export's initial values, would cost every new device their float32 size for nothing;
zeroed, they compress to almost nothing, and the model, which goes gzip-compressed to a device
that accepts it (`BlobAccess.gzipped`), costs about its graph's compressed size.
"""

from __future__ import annotations

import hashlib

from coordinator.store.base import Store
from coordinator.tasks.registry import Task
from protocol import codec
from protocol.delta_download import delta_seed, encode_served, make_delta, served_seed
from protocol.tflite_file import without_weights

MEMORY = 1024  # (checkpoint, codec) pairs remembered; a task needs one at a time
KEEP_PER_TASK = 8
# Delta downloads: a device's base is one of its task's last BASES_PER_TASK full downloads
# (older ones are a full download again), and each (base, checkpoint) delta is made once.
BASES_PER_TASK = 8
DELTAS_PER_TASK = 64


class DownloadBlobs:
    def __init__(self, store: Store):
        self.store = store
        self._made: dict[tuple[str, str], str] = {}  # (checkpoint sha, codec) or (model sha, "zeroed") -> blob sha
        self.served_for: dict[str, str] = {}  # download blob sha -> task id (bytes served, blob guards)
        self._recent: dict[str, list[str]] = {}  # task id -> its download blobs, oldest first
        self._bases: dict[str, list[str]] = {}  # task id -> its last full downloads (bases for deltas), oldest first
        self._deltas: dict[str, dict[tuple[str, str], str]] = {}  # task id -> (base, checkpoint) -> delta sha
        self.models: set[str] = set()  # the models devices download (weights zeroed): served gzip-compressed
        self._disposable: set[str] = set()  # quantized checkpoints and deltas: deleted once no task uses them

    def assignment_fields(self, task: Task, held: tuple[str, ...] | list[str], until: float, now: float) -> dict:
        """What an assignment names for a device to download: the model (`model_for`), the
        checkpoint (`sha_for`), for a device that holds a recent base the delta to it
        (`delta_for`), and SCAFFOLD's control variate; each by `url`, valid until ``until``."""
        model, checkpoint = self.model_for(task), self.sha_for(task)
        delta = self.delta_for(task, held, checkpoint)
        control = task.control_sha
        return {"model_sha256": model, "model_url": self.url(model, until, now, compressed=True),
                "checkpoint_sha256": checkpoint, "checkpoint_url": self.url(checkpoint, until, now),
                "control_sha256": control, "control_url": self.url(control, until, now) if control else "",
                **({"checkpoint_base_sha256": delta[0], "checkpoint_delta_sha256": delta[1],
                    "checkpoint_delta_url": self.url(delta[1], until, now)} if delta else {})}

    def url(self, sha: str, until: float, now: float, compressed: bool = False) -> str:
        """Where a device downloads blob ``sha``: the object store's presigned URL, valid until
        ``until`` at most, when blobs live in one (the coordinator then serves none of those
        bytes); else the coordinator's own `/v1/blobs/SHA`. ``compressed``: a task model,
        which travels gzip-encoded either way."""
        return self.store.blobs.download_url(sha, until, now, compressed) or f"/v1/blobs/{sha}"

    def model_for(self, task: Task) -> str:
        """The digest of the task's model as devices download it: its travelling weights zeroed.
        The same bytes on every replica (a pure function of the model)."""
        sha = self._made_once((task.model_sha, "zeroed"),
                              lambda: without_weights(self.store.blobs.read(task.model_sha)))
        self.models.add(sha)
        self.served_for[sha] = task.task_id
        return sha

    def sha_for(self, task: Task) -> str:
        """The digest of what the task's devices download now as its checkpoint."""
        sha = self._full_sha(task)
        bases = self._bases.setdefault(task.task_id, [])
        if sha not in bases:
            bases.append(sha)
            del bases[:-BASES_PER_TASK]
        return sha

    def delta_for(self, task: Task, held: tuple[str, ...] | list[str], current: str) -> tuple[str, str] | None:
        """(base, delta sha) for a device that holds ``held`` blobs: the newest of them that is a
        recent full download of this task, other than ``current``; None without delta downloads
        or such a base (the device then downloads ``current``)."""
        name = task.config.download_delta_codec
        bases = self._bases.get(task.task_id, [])
        if not name or not held:
            return None
        mine = set(held)
        base = next((b for b in reversed(bases) if b in mine and b != current), None)
        if base is None:
            return None
        deltas = self._deltas.setdefault(task.task_id, {})
        sha = deltas.get((base, current))
        if sha is None:
            base_bytes, target_bytes = self.store.blobs.read(base), self.store.blobs.read(current)
            if base_bytes is None or target_bytes is None:
                return None
            spec = codec.CodecSpec.parse(name, task.config.chunk_size)
            sha = self._put(make_delta(base_bytes, target_bytes, spec,
                                       delta_seed(base, current, spec.name)))
            deltas[(base, current)] = sha
            self._disposable.add(sha)
            while len(deltas) > DELTAS_PER_TASK:
                deltas.pop(next(iter(deltas)))
                self._forget_unused()
        self.served_for[sha] = task.task_id
        return base, sha

    def _full_sha(self, task: Task) -> str:
        name = task.config.download_codec
        if name == "f32":
            return task.checkpoint_sha
        spec = codec.CodecSpec.parse(name, task.config.chunk_size)
        sha = self._made_once((task.checkpoint_sha, name), lambda: self._encoded(task.checkpoint_sha, spec))
        self._disposable.add(sha)
        self._keep(task.task_id, sha)
        self.served_for[sha] = task.task_id
        return sha

    def _made_once(self, key: tuple[str, str], make) -> str:
        """The digest of the blob made from ``key`` (a task blob's digest and what was made of
        it) by ``make()``, which runs once per replica while remembered."""
        sha = self._made.get(key)
        if sha is not None and not self._exists(sha):
            sha = None  # deleted since (by another replica's retention): made again, the same bytes
        if sha is None:
            sha = self._put(make())
            if len(self._made) >= MEMORY:
                self._made.clear()
                self.served_for.clear()
            self._made[key] = sha
        return sha

    def _put(self, payload: bytes) -> str:
        sha = hashlib.sha256(payload).hexdigest()
        self.store.blobs.put(sha, payload)
        return sha

    def _exists(self, sha: str) -> bool:
        return self.store.blobs.exists(sha)

    def _keep(self, task_id: str, sha: str) -> None:
        recent = self._recent.setdefault(task_id, [])
        if sha not in recent:
            recent.append(sha)
        if len(recent) > KEEP_PER_TASK:
            del recent[:-KEEP_PER_TASK]
            self._forget_unused()

    def _in_use(self) -> set[str]:
        """Every download blob some task still sends devices to: two tasks on one model share
        their first quantized checkpoint (a pure function of the same weights)."""
        used = {sha for recent in self._recent.values() for sha in recent}
        used.update(sha for deltas in self._deltas.values() for sha in deltas.values())
        return used

    def _forget_unused(self) -> None:
        """Download blobs no task sends devices to any more: no longer counted, guarded, made
        or kept (the file goes)."""
        gone = self._disposable - self._in_use()
        for sha in gone:
            self.served_for.pop(sha, None)
            self.store.blobs.delete(sha)
        self._disposable -= gone
        if gone:
            self._made = {key: sha for key, sha in self._made.items() if sha not in gone}

    def _encoded(self, checkpoint_sha: str, spec: codec.CodecSpec) -> bytes:
        decoded = codec.decode(self.store.blobs.read(checkpoint_sha))
        return encode_served(decoded.values, decoded.counts, spec, served_seed(checkpoint_sha, spec.name))
