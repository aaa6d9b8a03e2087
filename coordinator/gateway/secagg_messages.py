"""SecAgg's key phases at the gateway: a device's AdvertiseKeys, ShareKeys and Unmasking
messages and its view of the round, for a SecAgg round it is assigned to (the protocol's
state lives in `coordinator.rounds.secagg`; its masked input arrives as an upload)."""

from __future__ import annotations


from coordinator import errors as E
from protocol.errors import ProtocolError



class SecAggMessages:
    # `gateway`: the DeviceGateway this is a part of (not imported here: it imports this module).
    def __init__(self, gateway):
        self.gateway = gateway

    def _round(self, device, task_id: str, round_num: int, upload_token: str | None):
        """(task, round row) of a SecAgg round this device is assigned to; 404 for a plain task."""
        g = self.gateway
        task = g.device_task(device, task_id)
        rnd = g.assigned(device, task_id, round_num, upload_token)
        if not task.config.secagg_on:
            raise E.NotFound(f"task '{task_id}' does not use secure aggregation")
        return task, rnd

    def post(self, device, task_id: str, round_num: int, upload_token: str | None, phase: str, raw) -> dict:
        """A device's AdvertiseKeys ('keys'), ShareKeys ('shares') or Unmasking ('reveals') message."""
        g = self.gateway
        task, rnd = self._round(device, task_id, round_num, upload_token)
        post = {"keys": g.secagg.post_keys, "shares": g.secagg.post_shares, "reveals": g.secagg.post_reveals}.get(phase)
        if post is None:
            raise E.NotFound(f"no SecAgg phase '{phase}'; use keys, shares or reveals")
        try:
            new = post(task, rnd, device.device_id, raw)
        except ProtocolError as exc:
            raise E.BadRequest(str(exc), exc.code) from exc
        g.rounds.advance(task, g.round_row(task_id, round_num), g.clock())  # everyone may have answered
        return {"accepted": True, "duplicate": not new}

    def view(self, device, task_id: str, round_num: int, upload_token: str | None):
        task, rnd = self._round(device, task_id, round_num, upload_token)
        return self.gateway.secagg.view(task, rnd, device.device_id)
