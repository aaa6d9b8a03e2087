"""Simulated devices in SecAgg rounds: the phases of `device_runtime.secagg_session`, in the
same order and with the same protocol objects (`protocol.secagg.client.SecAggClient`), each a
call into the gateway's `SecAggMessages` (what the HTTP handlers call) on virtual time.

A real device long-polls the round's SecAgg view and is woken when the phase moves on; the
phases move only when a message arrives or the driver ticks, so a simulated device looks at
its view after every tick (at most `tick_s` later than a woken device would). A device posts
its keys when assigned and trains meanwhile (training needs no keys), shares once the roster
is known, sends its masked input when both its training and the sharing phase are done, and
reveals its shares for the unmasking. A device that drops out (the population's dropout
while training) has posted its keys and shares and then vanishes: the survivors' reveals
recover its masks, as the protocol is built to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coordinator.errors import ApiError
from device_runtime.secagg_session import input_codes
from device_runtime.training import LocalResult
from protocol.messages import Assignment, UploadMeta
from protocol.secagg import ring
from protocol.secagg.client import SecAggClient
from protocol.secagg.messages import SecAggView, round_context

FINAL = ("aggregating", "committed", "failed")  # past unmasking: nothing more for a device to send


@dataclass
class Session:
    """One device's part in one SecAgg round."""

    device: int
    assignment: Assignment
    proto: SecAggClient
    trained_at: float  # virtual time its local training is done
    result: LocalResult | None  # None for a device that vanishes before its masked input
    vanishes: bool  # drops out before its masked input
    stage: str = "advertised"  # advertised -> shared -> sending -> sent
    payload: bytes = b""  # the masked input, once made
    seen: str = ""  # the round's state at its last look


class SecAggDevices:
    def __init__(self, sim):
        self.sim = sim  # the simulation.run.Simulation these devices belong to (its clock, queue, records)
        self.sessions: dict[int, Session] = {}
        self.outcomes: dict[str, int] = {}  # uploaded | excluded | dropped | failed | refused

    @property
    def _messages(self):
        return self.sim.coordinator.gateway.secagg_messages

    def start(self, i: int, a: Assignment, trained_at: float, result: LocalResult, vanishes: bool) -> None:
        """Assigned: post the device's public keys at once (AdvertiseKeys)."""
        proto = SecAggClient(round_context(a.task_id, a.round))
        session = Session(i, a, proto, trained_at, result, vanishes)
        if self._post(session, "keys", proto.public_keys().to_dict()):
            self.sessions[i] = session

    def after_tick(self) -> None:
        """Every device in a SecAgg round whose round moved on looks at its view, as a woken
        long poll would (and one waiting only for its own training, once that is done)."""
        now, states = self.sim.clock.now, {}
        for i in sorted(self.sessions):
            session = self.sessions.get(i)
            if session is None or session.stage == "sending":
                continue
            a = session.assignment
            if a.round not in states:
                rnd = self.sim.store.round(a.task_id, a.round)
                states[a.round] = str(rnd.state) if rnd is not None else "failed"
            waiting_to_send = session.stage == "shared" and session.seen == "reporting" and now >= session.trained_at
            if states[a.round] != session.seen or waiting_to_send:
                session.seen = states[a.round]
                self._step(session)

    def masked_input_arrives(self, i: int) -> None:
        """The masked input's upload reaches the coordinator (scheduled by `_step`)."""
        session = self.sessions.get(i)
        if session is None:
            return
        a, payload = session.assignment, session.payload
        r = session.result
        try:
            self.sim.coordinator.gateway.upload(self.sim.records[i], a.task_id, a.round, a.upload_token,
                                                UploadMeta(r.example_count, r.train_loss, r.eval_loss,
                                                           r.eval_accuracy, r.eval_count), payload)
        except ApiError as exc:
            self.sim.refused(exc.code)
            self._finish(session, "refused")
            return
        self.sim.landed(i, a.round, len(payload))
        session.stage = "sent"

    # -- one look at the view -------------------------------------------------------------------
    def _step(self, session: Session) -> None:
        a, now = session.assignment, self.sim.clock.now
        try:
            view = SecAggView.from_dict(self._messages.view(self.sim.records[session.device], a.task_id, a.round,
                                                            a.upload_token).to_dict())
        except ApiError:  # the assignment ended (the round closed without it)
            self._finish(session, "failed")
            return
        if view.state in FINAL:
            self._finish(session, "uploaded" if session.stage == "sent" else "failed")
        elif session.stage == "advertised" and view.state not in ("selecting", "advertising"):
            if view.params is None or not view.my_index:
                self._finish(session, "excluded")
                return
            shares = session.proto.share_keys(view.my_index, view.params, view.keys)
            if self._post(session, "shares", {"shares": [s.to_dict() for s in shares]}):
                session.stage = "shared"
        elif session.stage == "shared" and view.state != "sharing":
            if view.state != "reporting":
                self._finish(session, "failed")
            elif session.vanishes or now > a.report_deadline:
                self.sim.stats.dropped += 1
                self._finish(session, "dropped", back_at=session.trained_at + self.sim.rng.uniform(0, 600))
            elif now >= session.trained_at:
                p = view.params
                codes = input_codes(session.result, p, np.random.default_rng([self.sim.cfg.seed, 4, session.device,
                                                                               a.round]))
                session.payload = ring.pack(session.proto.masked_input(codes, view.sharers, view.inbox),
                                            p.modulus_bits)
                session.stage = "sending"
                self.sim.queue.schedule(now + len(session.payload) / self.sim.population.up_bps[session.device],
                                        "secagg_input", session.device)
        elif session.stage == "sent" and view.state != "reporting":
            if view.state == "unmasking" and view.unmask is not None:
                reveals = session.proto.unmask(view.unmask)
                self._post(session, "reveals", {"shares": [s.to_dict() for s in reveals]})
            self._finish(session, "uploaded")

    def _post(self, session: Session, phase: str, message: dict) -> bool:
        a = session.assignment
        record = self.sim.records[session.device]
        try:
            admitted = self._messages.admit(record, a.task_id, a.round, a.upload_token, phase)
            self._messages.post(record, admitted, message)
        except ApiError as exc:
            self.sim.refused(exc.code)
            self._finish(session, "failed")
            return False
        return True

    def _finish(self, session: Session, outcome: str, back_at: float | None = None) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.sessions.pop(session.device, None)
        self.sim.arrive_at(session.device, max(back_at or 0.0, self.sim.clock.now))
