"""SecAgg's key phases at the gateway: a device's AdvertiseKeys, ShareKeys and Unmasking
messages and its view of the round, for a SecAgg round it is assigned to (the protocol's
state lives in `coordinator.rounds.secagg`; its masked input arrives as an upload)."""

from __future__ import annotations

from dataclasses import dataclass

from coordinator import errors as E
from coordinator.gateway.steps import RoundSignals
from coordinator.gateway.upload_desk import UploadDesk
from coordinator.rounds.secagg import SecAggRounds
from coordinator.store.base import Store
from protocol.errors import ProtocolError

# Body limits by phase, from the message formats (protocol.secagg.messages): two base64 X25519
# keys; per neighbour one sealed share (a ciphertext of at most 1,024 bytes, 1,368 in base64)
# or one revealed Shamir share (66 bytes, 88 in base64), each with its indices and field names.
_KEYS_BYTES = 4 * 1024
_ENVELOPE_BYTES = 1024
_ITEM_BYTES = {"keys": 0, "shares": 1_500, "reveals": 256}


@dataclass(frozen=True)
class Admitted:
    """A SecAgg message whose sender, round and phase passed the checks; its body not read yet."""

    task: object
    round: object
    phase: str
    body_limit: int


class SecAggMessages:
    def __init__(self, store: Store, clock, desk: UploadDesk, secagg: SecAggRounds, rounds: RoundSignals):
        self.store, self.clock, self.desk, self.secagg, self.rounds = store, clock, desk, secagg, rounds

    def _round(self, device, task_id: str, round_num: int, upload_token: str | None):
        """(task, round row) of a SecAgg round this device is assigned to; 404 for a plain task."""
        task = self.desk.device_task(device, task_id)
        rnd = self.desk.assigned(device, task_id, round_num, upload_token)
        if not task.config.secagg_on:
            raise E.NotFound(f"task '{task_id}' does not use secure aggregation")
        return task, rnd

    def admit(self, device, task_id: str, round_num: int, upload_token: str | None, phase: str) -> Admitted:
        """Before a message's body is read: the phase's name, the task, the device's assignment
        and token; and the body limit for that phase's message in this task (a key message is
        small; shares and reveals grow with the roster, at most the task's selected count)."""
        per_item = _ITEM_BYTES.get(phase)
        if per_item is None:
            raise E.NotFound(f"no SecAgg phase '{phase}'; use keys, shares or reveals")
        task, rnd = self._round(device, task_id, round_num, upload_token)
        limit = _KEYS_BYTES if phase == "keys" else _ENVELOPE_BYTES + per_item * task.config.target_selected
        return Admitted(task, rnd, phase, limit)

    def post(self, device, admitted: Admitted, raw) -> dict:
        """A device's AdvertiseKeys ('keys'), ShareKeys ('shares') or Unmasking ('reveals') message."""
        task = admitted.task
        rnd = self.store.round(task.task_id, admitted.round.round)  # as it is now, after the body's transfer
        post = {"keys": self.secagg.post_keys, "shares": self.secagg.post_shares,
                "reveals": self.secagg.post_reveals}[admitted.phase]
        try:
            new = post(task, rnd, device.device_id, raw)
        except ProtocolError as exc:
            raise E.BadRequest(str(exc), exc.code) from exc
        self.rounds.advance(task, self.store.round(task.task_id, rnd.round), self.clock())  # everyone may have answered
        return {"accepted": True, "duplicate": not new}

    def view(self, device, task_id: str, round_num: int, upload_token: str | None):
        task, rnd = self._round(device, task_id, round_num, upload_token)
        return self.secagg.view(task, rnd, device.device_id)
