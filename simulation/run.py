"""A simulation: the production coordinator (`coordinator.service.Coordinator`: its gateway,
round driver, round kinds, strategies and pace steering, unforked) on the in-memory store and
a virtual clock, and a population of simulated devices driven by a discrete-event queue.
Nothing sleeps and no socket is opened: a device's check-in is the gateway's `checkin`, its
upload the gateway's `upload`, and the driver's `tick` runs every `tick_s` of virtual time.

A device checks in with the state its availability model gives it, obeys the coordinator's
"come back at T" (pace steering decides, as for a real device), and when assigned spends
virtual time downloading (its downlink), training (its speed x examples x epochs) and
uploading (its uplink); it abandons a round it cannot finish before the deadline and may
drop out while training. With real training (the default) the devices that upload run the
exported model's train step through LiteRT on their own examples, from the checkpoint they
were assigned; with `system_only` they upload updates of the right size and codec instead.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field

import numpy as np

from coordinator.errors import ApiError
from coordinator.gateway.pace import PaceConfig
from coordinator.gateway.tokens import hash_token
from coordinator.service import Coordinator
from coordinator.store.memory import MemoryStore
from coordinator.store.records import DeviceRecord
from protocol.messages import Assignment, CheckinRequest, DeviceState, UploadMeta
from protocol.tflite_file import read_manifest
from simulation import upload_retries
from simulation.clock import VirtualClock
from simulation.collector import rare_collections
from simulation.events import EventQueue
from simulation.local_work import LocalWork
from simulation.polls import LongPolls
from simulation.population import Population
from simulation.secagg_devices import SecAggDevices
from simulation.upload_retries import Attempt

log = logging.getLogger("fedge.simulate")
TASK_ID = "sim"
POPULATION = "sim"
SAFETY_MARGIN_S = 5.0  # a device abandons a round it would finish later than this before the deadline


@dataclass
class SimConfig:
    devices: int = 100
    hours: float = 24.0
    seed: int = 0
    system_only: bool = False
    train_time_s: float = 0.0  # > 0: a host-speed device's local training takes this long (fleet's --train-time)
    examples: int = 100  # system-only: examples each device reports
    tick_s: float = 1.0
    online_spread_s: float = 60.0  # devices come online at random times within this many seconds
    # A device with no slot asks to be held this long (`fedge device`'s long poll): woken when a
    # round opens or an asynchronous slot frees, as the served coordinator's handler does.
    long_poll_s: float = 10.0
    # True: a device checks in only while charging, idle and on unmetered Wi-Fi (an Android
    # job's constraints: the sample app's); False: whatever its state (`fedge device` on a board).
    phone_scheduler: bool = True
    # Pace steering off: every device not selected comes back after this many seconds (jittered
    # the coordinator's way), whatever the population and the rounds need. 0: steering on.
    fixed_retry_s: float = 0.0
    max_retry_s: float = 0.0  # > 0: pace steering's cap (`fedge serve --max-retry-s`); 0: the coordinator's default
    target: float | None = None
    progress: bool = True


@dataclass
class SimRound:
    """A closed round (or version), as the simulation saw it."""

    round: int
    state: str
    selected: int
    reported: int
    examples: int
    virtual_s: float  # when it closed, from the start
    duration_s: float
    global_accuracy: float
    global_loss: float
    bytes_up: int
    bytes_down: int
    reason: str = ""


@dataclass
class SimStats:
    checkins: int = 0
    assigned: int = 0
    downloads: int = 0  # blobs fetched (the model once, then a checkpoint and control variate a round)
    upload_failures: int = 0  # attempts whose connection broke, retried (`[network] upload_failure`)
    duplicate_uploads: int = 0  # retries of an update the coordinator had taken
    uploads: int = 0
    dropped: int = 0
    abandoned: int = 0
    refused: dict = field(default_factory=dict)
    ineligible_checkins: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    trainings: int = 0  # local trainings run through LiteRT (host time)
    checkins_by_hour: dict = field(default_factory=dict)
    uploads_by_device: np.ndarray | None = None

    @property
    def device_requests(self) -> int:
        """What the devices sent or fetched: check-ins, blob downloads, uploads (taken, refused,
        or a retry of one taken). The queue's events also count second looks after a wake-up
        and the driver's ticks."""
        return (self.checkins + self.downloads + self.uploads + self.duplicate_uploads
                + sum(self.refused.values()))


def sim_token(seed: int, i: int) -> str:
    """Device ``i``'s token (its record holds the token's hash, as a registered device's does)."""
    return f"sim-token-{seed}-{i}"


def _phone_state(up: bool) -> DeviceState:
    return DeviceState(charging=up, unmetered=up, idle=up, battery=0.9 if up else 0.4, free_storage_mb=4096.0,
                       runtime="litert", runtime_version="2.3.0")


# What a phone reports when its constraints hold, and when they do not (immutable: made once).
_AVAILABLE, _UNAVAILABLE = _phone_state(True), _phone_state(False)


class Simulation:
    def __init__(self, cfg: SimConfig, model_bytes: bytes, task_config: dict, population: Population,
                 data=None):
        """``data``: the devices' examples (device_runtime.fleet.datasets.FederatedData) for
        real training; None in system-only mode."""
        if not cfg.system_only and data is None:
            raise ValueError("real training needs the devices' data (or system_only)")
        self.cfg, self.model_bytes, self.population, self.data = cfg, model_bytes, population, data
        # The event path's scalar draws (arrival times, availability, dropout, retry jitter): Python's
        # generator, seeded from the run's seed. numpy's takes 0.4 us a scalar draw (1.4 us for
        # uniform(a, b)) against 0.03, and a million-device hour makes millions of them.
        self.rng = random.Random(int(np.random.SeedSequence([cfg.seed, 1]).generate_state(1, np.uint64)[0]))
        self.clock = VirtualClock()
        self.store = MemoryStore()
        if cfg.fixed_retry_s > 0:
            pace = PaceConfig(min_retry_s=cfg.fixed_retry_s, max_retry_s=cfg.fixed_retry_s,
                              ineligible_retry_s=cfg.fixed_retry_s)
        else:
            pace = PaceConfig(max_retry_s=cfg.max_retry_s) if cfg.max_retry_s > 0 else PaceConfig()
        # No rate limits (0 turns them off, as `fedge serve --checkin-rate 0` does): they guard the
        # HTTP edge against clients that ignore their retry times, and simulated devices obey them
        # (the limit's table of every device was a cache miss on each check-in).
        self.coordinator = Coordinator(self.store, pace=pace, clock=self.clock, seed=cfg.seed, checkin_rate=0,
                                       register_rate=0)
        self.queue = EventQueue()
        self.history: list[SimRound] = []
        self.stats = SimStats(uploads_by_device=np.zeros(cfg.devices, np.int64))
        self.manifest = read_manifest(model_bytes)
        admin = self.coordinator.admin
        admin.create_population(POPULATION)
        sha = admin.put_model(model_bytes)["model_sha256"]
        self.task = admin.create_task(POPULATION, {"model_sha256": sha, "config": task_config, "task_id": TASK_ID})
        self.records = self._register(cfg.devices)
        # Blobs each device holds, in download order (deterministic); only devices that took part
        # (a list for each of a million devices was 60 MB and a cache miss a check-in).
        self._held: dict[int, list[str]] = {}
        self._seen_rounds: set[int] = set()
        self._oldest_unrecorded = 1  # rounds below it are all in the history
        # Whether a round changed state since the history last looked: every close (a failure,
        # or the move to aggregating that a commit follows in the same call) is a transition,
        # and looking at the store on every tick and upload was a quarter of a small run.
        self._rounds_moved = True
        self._round_bytes: dict[int, list[int]] = {}
        self.work = LocalWork(cfg.seed, cfg.examples, cfg.system_only, model_bytes, self.manifest, self.store,
                              self.stats, data)
        self.target_reached_s: float | None = None
        self.polls = LongPolls(cfg.long_poll_s)
        # The check-in of a device that holds no blob yet (most of a large population): made once.
        self._empty_handed = {up: CheckinRequest(_AVAILABLE if up else _UNAVAILABLE, (), cfg.long_poll_s)
                              for up in (True, False)}
        self.secagg = SecAggDevices(self)  # devices in SecAgg rounds, phase by phase
        self.coordinator.driver.round_open_listeners.append(self._round_opened)
        self.coordinator.driver.round_change_listeners.append(self._round_moved)
        self.coordinator.gateway.slot_listeners.append(self._slots_free)
        self.coordinator.driver.slot_listeners.append(self._slots_free)

    def _register(self, n: int) -> list[DeviceRecord]:
        """Devices 0..n-1, registered with ids and tokens made from their index (the store
        orders a round's updates by device id, so random ids would make runs differ), in one batch."""
        with rare_collections():  # a million records: the collector's walks were a third of this
            tokens = [sim_token(self.cfg.seed, i) for i in range(n)]
            records = [DeviceRecord(f"d-{i:09d}", POPULATION, hash_token(tokens[i]), "", self.clock.now)
                       for i in range(n)]
            self.store.add_devices(records)
        return records

    # -- the event loop -----------------------------------------------------------------------
    def run(self, on_round=None) -> list[SimRound]:
        """Until the task finishes or the virtual hours run out."""
        with rare_collections():
            return self._run(on_round)

    def _run(self, on_round) -> list[SimRound]:
        from tqdm import tqdm

        end = self.clock.start + self.cfg.hours * 3600.0
        for i in range(self.cfg.devices):
            self.arrive_at(i, self.clock.now + self.rng.uniform(0, self.cfg.online_spread_s))
        self.queue.schedule(self.clock.now, "tick")
        bar = tqdm(total=round(self.cfg.hours, 2), unit="virtual h", disable=None if self.cfg.progress else True,
                   leave=False, bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} virtual h [{elapsed}]")
        shown, show_at = 0.0, self.clock.start + 36.0  # the bar moves every 0.01 virtual hours
        # Bound once: every event passes here, and most are check-ins.
        clock, pop_until, returns, check_in = self.clock, self.queue.pop_until, self.polls.returns, self._check_in
        self._gateway_checkin = self.coordinator.gateway.checkin
        while (ev := pop_until(end)) is not None:
            at, _, kind, device, data = ev
            clock.now = at  # the queue hands events out in time order (clock.advance_to's check)
            if kind == "arrive":
                if data is None or returns(data):
                    check_in(device)
            elif kind == "tick":
                self.coordinator.tick()
                self.secagg.after_tick()
                self._closed_rounds(on_round)
                if self._finished():
                    break
                self.queue.schedule(self.clock.now + self.cfg.tick_s, "tick")
            elif kind == "second_look":
                self._answered(device, self.coordinator.gateway.checkin(self.records[device], data,
                                                                        rate_limited=False))
            elif kind == "upload":
                self._upload(device, *data)
                # Recorded (and evaluated) now: hundreds of uploads can land at one instant, and
                # the retention window (keep_checkpoints) could drop a version's checkpoint
                # before the next tick.
                self._closed_rounds(on_round)
            elif kind == "secagg_input":
                self.secagg.masked_input_arrives(device)
                self._closed_rounds(on_round)
            if at >= show_at:
                hours = self.clock.elapsed_s / 3600.0
                bar.update(hours - shown)
                shown, show_at = hours, at + 36.0
        bar.close()
        return self.history

    def _finished(self) -> bool:
        return self.coordinator.tasks[TASK_ID].state != "active"

    # -- a device's actions -------------------------------------------------------------------
    def arrive_at(self, i: int, at: float, poll: int | None = None) -> None:
        """The device's next check-in, at ``at`` (``poll``: the held long poll this return ends).
        A phone's job scheduler runs the check-in only while its constraints (charging, idle,
        unmetered) hold: if they do not at ``at``, it runs once they next do, decided now (one
        event, not a wake-up that finds them unmet and then another), and never if they never do."""
        if self.cfg.phone_scheduler:
            elapsed, availability = at - self.clock.start, self.population.availability
            if not availability.available(i, elapsed, self.rng):
                later = availability.next_available(i, elapsed, self.rng)
                if not math.isfinite(later):
                    return
                at = self.clock.start + later
        self.queue.schedule(at, "arrive", i, poll)

    def _check_in(self, i: int) -> None:
        now = self.clock.now
        elapsed = now - self.clock.start
        # A phone checks in only when its constraints hold (`arrive_at`); a board whatever its state.
        up = self.cfg.phone_scheduler or self.population.availability.available(i, elapsed, self.rng)
        s = self.stats
        s.checkins += 1
        by_hour, hour = s.checkins_by_hour, int(elapsed // 3600)
        by_hour[hour] = by_hour.get(hour, 0) + 1
        if not up:
            s.ineligible_checkins += 1
        held = self._held.get(i)
        req = (CheckinRequest(_AVAILABLE if up else _UNAVAILABLE, tuple(held), self.cfg.long_poll_s) if held else
               self._empty_handed[up])
        resp = self._gateway_checkin(self.records[i], req)
        if resp.reason == "no_slot":
            # Held until a round opens (or a slot frees) or its retry time, else back at its
            # retry time once the poll has ended: that arrival is scheduled now, and a wake-up
            # cancels it. (Conditionals: min and max are calls.)
            back, ends = resp.retry_at, now + self.cfg.long_poll_s
            if back < ends:
                ends = back
            if ends > now:
                self.arrive_at(i, back if back >= ends + 1.0 else ends + 1.0, self.polls.hold(i, req, now, ends))
                return
        self._answered(i, resp)

    def _round_opened(self, task_id: str) -> None:
        self._wake(None)

    def _slots_free(self, task_id: str, slots: int) -> None:
        self._wake(slots)

    def _wake(self, n: int | None) -> None:
        """The held check-ins to look again now (the handler's second look), oldest first."""
        for i, req in self.polls.wake(n, self.clock.now):
            self.queue.schedule(self.clock.now, "second_look", i, req)

    def _answered(self, i: int, resp) -> None:
        now, s = self.clock.now, self.stats
        if resp.outcome != "assigned":
            self.arrive_at(i, max(resp.retry_at, now + 1.0))
            return
        s.assigned += 1
        a = resp.assignment
        down = self._download(i, a)
        examples = self.work.examples(i)
        epochs = a.plan.epochs
        # --train-time: a host-speed device's training lasts that long, a slower one its slowdown
        # times longer (as in `fedge fleet`); otherwise its seconds per example x examples x epochs.
        train_s = (self.cfg.train_time_s * self.population.slowdown[i] if self.cfg.train_time_s > 0
                   else self.population.example_s[i] * examples * epochs)
        trained_at = now + down / self.population.down_bps[i] + train_s
        if a.plan.secagg:  # its masked input's size and time are known once the roster is
            self._secagg_round(i, a, examples, trained_at)
            return
        done = trained_at + self.work.payload_size(a) / self.population.up_bps[i]
        if self.rng.random() < self.population.dropout:
            s.dropped += 1  # vanished while training: back once it would have finished
            self.arrive_at(i, done + self.rng.uniform(0, 600))
            return
        if done > a.report_deadline - SAFETY_MARGIN_S:
            s.abandoned += 1  # a real device checks this before training and gives the round up
            self.arrive_at(i, done)
            return
        payload, meta = self.work.update(i, a, examples)
        self.queue.schedule(done, "upload", i, (a, payload, meta))

    def _secagg_round(self, i: int, a: Assignment, examples: int, trained_at: float) -> None:
        vanishes = self.rng.random() < self.population.dropout  # drawn as for a plain round
        if trained_at > a.report_deadline - SAFETY_MARGIN_S:
            self.stats.abandoned += 1
            self.arrive_at(i, trained_at)
            return
        self.secagg.start(i, a, trained_at, self.work.result(i, a, examples) if not vanishes else None, vanishes)

    def _download(self, i: int, a: Assignment) -> int:
        """Bytes the device downloads for the round (the blobs it does not hold already), each
        through the gateway's blob access as the download handler does: who may fetch it, the
        task model gzip-compressed (both device runtimes ask for gzip), the bytes counted for
        the round's metrics."""
        size, held, access = 0, self._held.setdefault(i, []), self.coordinator.gateway.blobs
        checkpoint = a.checkpoint_sha256
        if a.checkpoint_delta_sha256 and a.checkpoint_base_sha256 in held and checkpoint not in held:
            # The task's delta downloads: the device adds the delta to the base it holds (kept
            # among its latest blobs), as `fedge device` and the app do.
            held.remove(a.checkpoint_base_sha256)
            held.append(a.checkpoint_base_sha256)
            checkpoint = a.checkpoint_delta_sha256
        for sha in (a.model_sha256, checkpoint, a.control_sha256):
            if sha and sha not in held:
                blob = self.store.blobs.read(sha)
                if blob is None:  # gone since the assignment (retention): the device gets a 404
                    continue
                access.authorize(sha, f"Bearer {self.records[i].device_id}.{sim_token(self.cfg.seed, i)}", False)
                packed = access.gzipped(sha, lambda: blob)
                sent = len(packed) if packed is not None else len(blob)
                access.served(sha, sent)
                self.stats.downloads += 1
                size += sent
                held.append(sha)
        del held[:-4]  # a phone keeps its model and latest checkpoints
        self.stats.bytes_down += size
        self._round_bytes.setdefault(a.round, [0, 0])[1] += size
        return size

    def _upload(self, i: int, a: Assignment, payload: bytes, meta: UploadMeta,
                tried: Attempt = Attempt()) -> None:
        now = self.clock.now
        outcome = upload_retries.attempt(self.population.upload_failure, tried, now, self.rng)
        if outcome.delivered:
            self._deliver(i, a, payload, meta)
        if outcome.retry_after_s is not None:  # the connection broke: the device sends it again
            self.stats.upload_failures += 1
            again = now + outcome.retry_after_s + len(payload) / self.population.up_bps[i]
            self.queue.schedule(again, "upload", i, (a, payload, meta, outcome.retry))
            return
        self.arrive_at(i, now)  # straight back (done or given up), as `fedge device` does

    def _deliver(self, i: int, a: Assignment, payload: bytes, meta: UploadMeta) -> None:
        """The update reaches the gateway."""
        try:
            answer = self.coordinator.gateway.upload(self.records[i], a.task_id, a.round, a.upload_token, meta,
                                                     payload)
        except ApiError as exc:
            self.refused(exc.code)
            return
        if isinstance(answer, dict) and answer.get("duplicate"):
            self.stats.duplicate_uploads += 1  # a retry of an update it took (that answer was lost)
            return
        self.landed(i, answer.get("round", a.round) if isinstance(answer, dict) else a.round, len(payload))

    def refused(self, code: str) -> None:
        """A message the coordinator refused, counted by its error code."""
        self.stats.refused[code] = self.stats.refused.get(code, 0) + 1

    def landed(self, i: int, round_num: int, size: int) -> None:
        """An upload (or masked input) the coordinator took, counted in the round that took it."""
        self.stats.uploads += 1
        self.stats.uploads_by_device[i] += 1
        self.stats.bytes_up += size
        self._round_bytes.setdefault(round_num, [0, 0])[0] += size

    # -- what the simulation records ----------------------------------------------------------
    def _round_moved(self, task_id: str) -> None:
        self._rounds_moved = True

    def _closed_rounds(self, on_round) -> None:
        if not self._rounds_moved:
            return
        # From the oldest round not yet recorded: several can open and close between two looks.
        rounds = self.store.rounds(TASK_ID, self._oldest_unrecorded)
        # A commit the driver left for later (deferred commits) is still to come: look again.
        self._rounds_moved = any(r.state == "aggregating" for r in rounds)
        for r in rounds:
            if r.round in self._seen_rounds or r.state not in ("committed", "failed"):
                continue
            self._seen_rounds.add(r.round)
            while self._oldest_unrecorded in self._seen_rounds:
                self._oldest_unrecorded += 1
            acc = loss = math.nan
            if r.state == "committed" and self.work.trains:
                model = self.work.litert()
                model.set_weights(self.work.weights_of(r.checkpoint_sha))
                loss, acc = model.evaluate(self.data.x_test, self.data.y_test)
            up, down = self._round_bytes.get(r.round, [0, 0])
            rec = SimRound(r.round, r.state, r.selected, r.reported, r.examples, (r.closed_at or self.clock.now)
                           - self.clock.start, (r.closed_at or self.clock.now) - r.opened_at, acc, loss, up, down,
                           r.reason)
            self.history.append(rec)
            if self.cfg.target is not None and self.target_reached_s is None and acc >= self.cfg.target:
                self.target_reached_s = rec.virtual_s
            if on_round:
                on_round(rec)
