"""The operator's side of releases: promote a committed checkpoint to a population's channel
(as the exported model carrying those weights), raise its percentage, roll it back, list
them. Every change is in the releasing task's audit trail; every release is signed with the
coordinator's key (the audit trail's), which devices pinned at registration."""

from __future__ import annotations

import hashlib
import secrets

from coordinator import errors as E
from coordinator.releases.states import ReleaseRefused, ReleaseState, check_promote, check_rollback
from coordinator.rounds.states import RoundState
from coordinator.store.records import ReleaseRecord
from coordinator.tasks.config import MAX_ROUNDS
from protocol import releases
from protocol.releases import DEFAULT_CHANNEL, MAX_NAME
from protocol.tflite_file import inference_only, with_weights

CREATE_KEYS = {"round", "channel", "percent", "note", "require_eval", "release_id"}
MAX_NOTE = 500
SEQUENCE_TRIES = 5  # replicas releasing on one channel at the same moment


class ReleaseDesk:
    def __init__(self, store, clock, tasks, audit, evaluations):
        """``evaluations(task_id)``: the task's federated evaluations (AdminOperations.evaluations)."""
        self.store, self.clock, self.tasks, self.audit, self.evaluations = store, clock, tasks, audit, evaluations

    @property
    def public_key(self) -> str:
        return releases.public_hex(self.audit.key)

    def create(self, task_id: str, raw) -> dict:
        task = self.tasks.require(task_id)
        if not isinstance(raw, dict) or set(raw) - CREATE_KEYS or "round" not in raw:
            raise E.BadRequest(f"expected {{round, channel?, percent?, note?, require_eval?, release_id?}}")
        num, channel = raw["round"], raw.get("channel", DEFAULT_CHANNEL)
        percent, note = raw.get("percent", 100.0), raw.get("note", "")
        release_id = raw.get("release_id") or f"rel-{secrets.token_hex(6)}"
        if not isinstance(num, int) or isinstance(num, bool) or not 0 <= num <= MAX_ROUNDS:
            raise E.BadRequest(f"round must be an integer in [0, {MAX_ROUNDS}]")
        _name(channel, "channel")
        _name(release_id, "release_id")
        if not isinstance(note, str) or len(note) > MAX_NOTE:
            raise E.BadRequest(f"note must be a string of at most {MAX_NOTE} characters")
        _percent(percent)
        rnd = self.store.round(task_id, num)
        if rnd is None or rnd.state != RoundState.COMMITTED or not rnd.checkpoint_sha:
            raise E.Conflict(f"round {num} of task {task_id} is not a committed round", "not_committed")
        if "require_eval" in raw:
            self._check_evaluation(task_id, num, raw["require_eval"])
        checkpoint, model = self.store.blobs.read(rnd.checkpoint_sha), self.store.blobs.read(task.model_sha)
        if checkpoint is None or model is None:
            raise E.Conflict(f"round {num}'s checkpoint is no longer kept (keep_checkpoints, keep_every)", "gone")
        released = inference_only(with_weights(model, checkpoint))  # a phone infers with it, never trains
        sha = hashlib.sha256(released).hexdigest()
        self.store.blobs.put(sha, released)
        record = self._add(task.population, channel, release_id, task_id, num, sha, len(released), float(percent),
                           note, rollback_of="")
        self.audit.record(task_id, "release", record.to_dict())
        return self._answer(record)

    def promote(self, release_id: str, raw) -> dict:
        r = self._require(release_id)
        if not isinstance(raw, dict) or set(raw) != {"percent"}:
            raise E.BadRequest("expected {percent}")
        _percent(raw["percent"])
        percent = float(raw["percent"])
        try:
            check_promote(r.state, r.percent, percent)
        except ReleaseRefused as exc:
            raise E.Conflict(str(exc), exc.code) from None
        if not self.store.update_release(release_id, r.state, self.clock(), percent=percent):
            raise E.Conflict("the release changed meanwhile; look again", "changed")
        if percent >= 100:
            self._supersede_older(r)
        self.audit.record(r.task_id, "release_promoted", {"release_id": release_id, "from": r.percent, "to": percent})
        return self._answer(self.store.release(release_id))

    def rollback(self, release_id: str) -> dict:
        r = self._require(release_id)
        channel = self.store.releases(r.population, r.channel)  # newest first
        newest_active = next((c for c in channel if c.state != ReleaseState.ROLLED_BACK), None)
        earlier = next((c for c in channel if c.sequence < r.sequence and c.state != ReleaseState.ROLLED_BACK
                        and c.model_sha != r.model_sha), None)
        try:
            check_rollback(r.state, newest_active is not None and newest_active.release_id == release_id,
                           earlier is not None)
        except ReleaseRefused as exc:
            raise E.Conflict(str(exc), exc.code) from None
        if not self.store.update_release(release_id, r.state, self.clock(), state=ReleaseState.ROLLED_BACK):
            raise E.Conflict("the release changed meanwhile; look again", "changed")
        back = self._add(r.population, r.channel, f"rel-{secrets.token_hex(6)}", earlier.task_id, earlier.round,
                         earlier.model_sha, earlier.size, 100.0, f"rollback of {release_id} to {earlier.release_id}",
                         rollback_of=release_id)
        self.audit.record(r.task_id, "release_rolled_back", {"release_id": release_id, "to": earlier.release_id,
                                                             "new_release": back.to_dict()})
        return self._answer(back)

    def list(self, population: str | None = None, channel: str | None = None) -> list[dict]:
        return [self._answer(r) for r in self.store.releases(population, channel)]

    def show(self, release_id: str) -> dict:
        return self._answer(self._require(release_id))

    # -- inside ------------------------------------------------------------------------------
    def _add(self, population, channel, release_id, task_id, num, sha, size, percent, note, rollback_of):
        if self.store.release(release_id) is not None:
            raise E.Conflict(f"release {release_id} exists", "exists")
        for _ in range(SEQUENCE_TRIES):
            sequence = self.store.last_release_sequence(population, channel) + 1
            now = self.clock()
            record = ReleaseRecord(release_id, population, channel, sequence, task_id, num, sha, size, percent,
                                   ReleaseState.ACTIVE.value, note,
                                   releases.sign(self.audit.key, population, channel, release_id, sequence, sha),
                                   rollback_of, now, now)
            if self.store.add_release(record):
                if percent >= 100:
                    self._supersede_older(record)
                return record
        raise E.Conflict("other releases of this channel were being made at the same time; try again", "busy")

    def _supersede_older(self, r: ReleaseRecord) -> None:
        for older in self.store.releases(r.population, r.channel):
            if older.sequence < r.sequence and older.state == ReleaseState.ACTIVE:
                self.store.update_release(older.release_id, ReleaseState.ACTIVE, self.clock(),
                                          state=ReleaseState.SUPERSEDED)

    def _check_evaluation(self, task_id: str, num: int, required) -> None:
        if isinstance(required, bool) or not isinstance(required, (int, float)) or not 0 <= required <= 1:
            raise E.BadRequest("require_eval must be an accuracy in [0, 1]")
        done = [e for e in self.evaluations(task_id) if e["round"] == num and e["metrics"]
                and "eval_accuracy" in e["metrics"]]
        if not done:
            raise E.Conflict(f"round {num} has no federated evaluation yet: `fedge task evaluate {task_id} --round "
                             f"{num}` first", "no_evaluation")
        best = done[-1]["metrics"]
        if best["eval_accuracy"] < required:
            raise E.Conflict(f"round {num}'s federated evaluation is {best['eval_accuracy']:.4f} "
                             f"(on {int(best.get('eval_count', 0))} examples), below the required {required:.4f}",
                             "below_required")

    def _require(self, release_id: str) -> ReleaseRecord:
        r = self.store.release(release_id) if isinstance(release_id, str) else None
        if r is None:
            raise E.NotFound(f"no release {release_id}")
        return r

    def _answer(self, r: ReleaseRecord) -> dict:
        return {**r.to_dict(), "signature": r.signature}


def _name(value, what: str) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME or "\0" in value or "/" in value:
        raise E.BadRequest(f"{what} must be a name of 1 to {MAX_NAME} characters without '/'")


def _percent(value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 100:
        raise E.BadRequest("percent must be a number in (0, 100]")
