"""Evaluation reports at the gateway: a device's counts on its holdout in an evaluation
task's round, checked like an update (assignment, token, duplicate, deadline) and stored as
the round's record of that device; the report that reaches the goal closes the round."""

from __future__ import annotations

import hashlib
import json

from coordinator import errors as E
from coordinator.gateway.intakes import SyncIntake
from coordinator.gateway.upload_desk import UploadDesk
from coordinator.rounds.states import RoundState
from coordinator.store.base import Store
from coordinator.store.records import UpdateRecord
from coordinator.tasks.registry import Task
from protocol.errors import ProtocolError
from protocol.messages import EvaluationReport


class EvaluationIntake(SyncIntake):
    """Slots as a synchronous round's; no updates: reports, through `admit` and `report`."""

    upload_path = "evaluation"

    def body_limit(self, task: Task) -> int:
        raise E.NotFound(f"task '{task.task_id}' is an evaluation task: POST the report (JSON) to the assignment's "
                         "upload_url (.../evaluation), not an update")


class EvaluationReports:
    """A device's report for an evaluation round, checked before and after its body is read."""

    def __init__(self, store: Store, clock, desk: UploadDesk, rounds, close_full_round):
        self.store, self.clock, self.desk, self.rounds = store, clock, desk, rounds
        self.close_full_round = close_full_round

    def admit(self, device, task_id: str, round_num: int, upload_token: str | None):
        """(task, round) of an evaluation this device is assigned to: checked before the body is read."""
        task = self.desk.device_task(device, task_id)
        rnd = self.desk.assigned(device, task_id, round_num, upload_token)
        if not task.config.evaluation:
            raise E.NotFound(f"task '{task_id}' is not an evaluation task; upload an update")
        return task, rnd

    def accept(self, device, admitted: tuple, raw) -> dict:
        """The report of the round `admit` checked (its body read since): the round as it is now."""
        desk = self.desk
        task, rnd = admitted
        task_id, round_num = task.task_id, rnd.round
        rnd = self.store.round(task_id, round_num)
        try:
            report = EvaluationReport.from_dict(raw)
        except ProtocolError as exc:
            desk.reject(exc.code)
            raise E.BadRequest(str(exc), exc.code) from exc
        if report.personalized_correct is not None and not task.config.personalize_steps:
            desk.reject("unrequested")
            raise E.BadRequest("this evaluation asked for no personalization (personalize_steps 0): personalized_* "
                               "fields are refused, not counted", "unrequested_field")
        body = json.dumps(report.to_dict(), sort_keys=True).encode()
        digest = hashlib.sha256(body).hexdigest()
        previous = self.store.update(task_id, round_num, device.device_id)
        if previous is not None:
            if previous.digest == digest:
                return {"accepted": True, "duplicate": True}
            desk.reject("duplicate")
            raise E.Conflict("this device's report for the round was already accepted", "duplicate")
        if rnd.state not in (RoundState.SELECTING, RoundState.REPORTING) or self.clock() > rnd.report_deadline:
            desk.reject("late")
            raise E.Gone(f"round {round_num} is closed ({rnd.state}); the report was not counted", "round_closed")
        stored = {"correct": report.correct, "loss_sum": report.loss_sum}
        if report.personalized_correct is not None:
            stored.update(personalized_correct=report.personalized_correct,
                          personalized_loss_sum=report.personalized_loss_sum)
        record = UpdateRecord(task_id, round_num, device.device_id, report.examples, stored, "", digest, self.clock())
        reported = self.store.add_update(record, only_open=True)
        if reported is None:
            desk.reject("late")
            raise E.Gone(f"round {round_num} closed; the report was not counted", "round_closed")
        if reported >= task.config.goal_count:
            self.rounds.guarded(task, self.close_full_round, task, round_num)
        return {"accepted": True, "duplicate": False}
