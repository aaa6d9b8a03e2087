"""Evaluation reports at the gateway: a device's counts on its holdout in an evaluation
task's round, checked like an update (assignment, token, duplicate, deadline) and stored as
the round's record of that device; the report that reaches the goal closes the round."""

from __future__ import annotations

import hashlib
import json

from coordinator.rounds.states import RoundState
from coordinator import errors as E
from coordinator.store.records import UpdateRecord
from protocol.errors import ProtocolError
from protocol.messages import EvaluationReport



class EvaluationIntake:
    # `gateway`: the DeviceGateway this is a part of (not imported here: it imports this module).
    def __init__(self, gateway):
        self.gateway = gateway

    def admit(self, device, task_id: str, round_num: int, upload_token: str | None):
        """(task, round) of an evaluation this device is assigned to: checked before the body is read."""
        g = self.gateway
        task = g.device_task(device, task_id)
        rnd = g.assigned(device, task_id, round_num, upload_token)
        if not task.config.evaluation:
            raise E.NotFound(f"task '{task_id}' is not an evaluation task; upload an update")
        return task, rnd

    def accept(self, device, admitted: tuple, raw) -> dict:
        """The report of the round `admit` checked (its body read since): the round as it is now."""
        g = self.gateway
        task, rnd = admitted
        task_id, round_num = task.task_id, rnd.round
        rnd = g.round_row(task_id, round_num)
        try:
            report = EvaluationReport.from_dict(raw)
        except ProtocolError as exc:
            g.reject(exc.code)
            raise E.BadRequest(str(exc), exc.code) from exc
        if report.personalized_correct is not None and not task.config.personalize_steps:
            g.reject("unrequested")
            raise E.BadRequest("this evaluation asked for no personalization (personalize_steps 0): personalized_* "
                               "fields are refused, not counted", "unrequested_field")
        body = json.dumps(report.to_dict(), sort_keys=True).encode()
        digest = hashlib.sha256(body).hexdigest()
        previous = g.store.update(task_id, round_num, device.device_id)
        if previous is not None:
            if previous.digest == digest:
                return {"accepted": True, "duplicate": True}
            g.reject("duplicate")
            raise E.Conflict("this device's report for the round was already accepted", "duplicate")
        if rnd.state not in (RoundState.SELECTING, RoundState.REPORTING) or g.clock() > rnd.report_deadline:
            g.reject("late")
            raise E.Gone(f"round {round_num} is closed ({rnd.state}); the report was not counted", "round_closed")
        stored = {"correct": report.correct, "loss_sum": report.loss_sum}
        if report.personalized_correct is not None:
            stored.update(personalized_correct=report.personalized_correct,
                          personalized_loss_sum=report.personalized_loss_sum)
        record = UpdateRecord(task_id, round_num, device.device_id, report.examples, stored, "", digest, g.clock())
        reported = g.store.add_update(record, only_open=True)
        if reported is None:
            g.reject("late")
            raise E.Gone(f"round {round_num} closed; the report was not counted", "round_closed")
        if reported >= task.config.goal_count:
            g.rounds.guarded(task, g.close_full_round, task, round_num)
        return {"accepted": True, "duplicate": False}
