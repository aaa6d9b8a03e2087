"""The round driver: applies the round engine's steps (`coordinator.rounds.engine`) to each
task's rounds, on the clock (`tick`) and on device events; opens, fails and commits rounds
(the commit's computation is `coordinator.rounds.commit`, off the event loop when the app runs
the driver); rebuilds open rounds after a restart (`recover`). An error while driving one
task fails that task's round and never stops another.

It receives what it uses: the store, the clock, the task registry, the open rounds'
running aggregates, the SecAgg rounds and the metrics. Others learn what it did through its
listeners (round opened, round changed, commit requested).
"""

from __future__ import annotations

import asyncio
import logging

from coordinator.aggregation.strategies import RoundContext
from coordinator.rounds import states
from coordinator.rounds.all_kinds import RoundKinds
from coordinator.rounds.commit import CommitInputs, CommitResult, compute_commit
from coordinator.rounds.kinds import SyncKind
from coordinator.rounds.optimizer_state import OptimizerStateFiles
from coordinator.rounds.privacy_budget import budget_stop, dp_sampling_rate
from coordinator.rounds.replicas import Replicas
from coordinator.rounds.retention import prune_after_round
from coordinator.rounds.round_metrics import evaluation_metrics, training_metrics
from coordinator.rounds.running import RunningRounds
from coordinator.rounds.secagg import SecAggRounds
from coordinator.rounds.states import Event, OPEN_STATES, RoundState
from coordinator.store.base import Store
from coordinator.store.blobs import round_updates_prefix
from coordinator.store.records import RoundRecord
from coordinator.tasks.registry import Task, TaskRegistry
from protocol.secagg.server import BelowThreshold

log = logging.getLogger("fedge.coordinator")


class RoundDriver:
    """With a shared store (PostgreSQL), several replicas run a driver each: a task's rounds
    are driven (opened, failed, committed) only by the replica holding its lease; every
    replica accepts check-ins and uploads, and picks up what the others changed each tick
    (`sync_from_store`)."""

    def __init__(self, store: Store, clock, tasks: TaskRegistry, running: RunningRounds, secagg: SecAggRounds,
                 metrics=None, audit=None, served_bytes=None):
        self.store, self.clock, self.tasks, self.running, self.secagg = store, clock, tasks, running, secagg
        self.metrics = metrics
        self.audit = audit  # coordinator.audit.trail.AuditTrail (None: not recorded)
        # Called with the task id whenever a round opens (the app wakes long-polling check-ins).
        self.round_open_listeners: list = []
        # Called with the task id on every round transition (wakes long-polling SecAgg views).
        self.round_change_listeners: list = []
        # Leases and what the other replicas did.
        self.replicas = Replicas(store, clock, tasks, running, self.round_open_listeners,
                                 self.round_change_listeners, lambda task: self.kind(task).opens_in)
        self.replica_id = self.replicas.replica_id
        self.holds_lease = self.replicas.holds_lease
        self.release_leases = self.replicas.release_leases
        self.sync_from_store = self.replicas.sync_from_store
        # With a running driver (the app), commits are computed off the event loop: requested
        # here, taken by the driver (take_pending_commits), run by commit_async.
        self.defer_commits = False
        self.pending_commits: list[tuple[str, int]] = []
        self.committing: set[tuple[str, int]] = set()
        self.commit_listeners: list = []
        # Asynchronous tasks: called with (task id, free slots) each tick while slots are free.
        self.slot_listeners: list = []
        # Called with the task when an evaluation of its latest checkpoint is due (eval_every).
        self.evaluation_listeners: list = []
        # The blob bytes this replica served for a task since it was last asked (the gateway's).
        self.take_served = served_bytes or (lambda task_id: 0)
        # What differs between kinds of task (sync, SecAgg, evaluation, buffered) is theirs.
        self.kinds = RoundKinds(self, store, running, secagg, self.slot_listeners, metrics)
        self.optimizer_state = OptimizerStateFiles(store.blobs)

    def _count(self, metric: str, label: str) -> None:
        if self.metrics is not None:
            self.metrics.count(metric, label)


    def recover(self) -> None:
        """Load tasks; rebuild the running sum of every open round from its stored updates."""
        self.tasks.load()
        for rnd in self.store.open_rounds():
            task = self.tasks[rnd.task_id]
            # A round that cannot be rebuilt (a damaged file) fails alone; the service still starts.
            self.guarded(task, self._recover_round, task, rnd.round)

    def kind(self, task: Task) -> SyncKind:
        return self.kinds.of(task.config)

    def _recover_round(self, task: Task, num: int) -> None:
        self.kind(task).recover(task, num)

    def transition(self, task: Task, round_num: int, event: Event, reason: str = "") -> bool:
        """Apply what happened to a round: the one place a round changes state (a commit's own
        write is the store's compare-and-set from aggregating). An event the round has already
        taken (two uploads reaching the goal at once) changes nothing; one the table does not
        allow from the round's state raises IllegalTransition. Whether the round moved."""
        rnd = self.store.round(task.task_id, round_num)
        if rnd is None or states.already_taken(rnd.state, event):
            return False
        target = states.after(rnd.state, event)
        closed = self.clock() if states.is_final(target) else None
        if not self.store.set_round_state(task.task_id, round_num, target, reason, closed, expected=rnd.state):
            return False  # another replica moved it first
        log.info("task %s round %d: %s -> %s %s", task.task_id, round_num, rnd.state, target.value, reason)
        for listener in self.round_change_listeners:
            listener(task.task_id)
        return True

    def tick(self) -> None:
        """Advance every active task's round by the clock; called periodically.

        Uploads and commits also advance rounds as they happen (a full round commits at
        its last upload and the next round opens at once); the tick handles windows and
        deadlines passing, and anything a restart left half-way.
        """
        now = self.clock()
        if self.store.shared:
            self.sync_from_store()
        for task in list(self.tasks.values()):
            if task.state == "active" and self.holds_lease(task):
                self.guarded(task, self._drive, task, now)

    def _drive(self, task: Task, now: float) -> None:
        self.kind(task).drive(task, now)

    def guarded(self, task: Task, step, *args) -> None:
        """Run one step of driving ``task``; an exception fails that task's open round with the
        reason and goes no further: it never stops another task, nor the next tick."""
        try:
            step(*args)
        except Exception as exc:  # noqa: BLE001 - the driver must outlive any one task's failure
            self._fail_on_error(task, exc)

    def _fail_on_error(self, task: Task, exc: Exception) -> None:
        log.error("task %s: error while driving the round", task.task_id, exc_info=exc)
        self._count("driver_errors", type(exc).__name__)
        try:
            rnd = self._latest_round(task)
            if rnd is not None and rnd.state in OPEN_STATES:
                self.fail_round(task, rnd.round, f"internal error while driving the round: "
                                                    f"{type(exc).__name__}: {str(exc)[:200]}")
        except Exception:  # noqa: BLE001
            log.exception("task %s: could not fail the round after an error", task.task_id)

    def round_row(self, task_id: str, round_num: int) -> RoundRecord | None:
        return self.store.round(task_id, round_num)

    def _latest_round(self, task: Task) -> RoundRecord | None:
        return self.store.latest_round(task.task_id)

    def open_next_round(self, task: Task, last: int, now: float) -> None:
        """Open round ``last + 1``, or finish the task when its rounds are done."""
        if task.state != "active" or not self.holds_lease(task):
            return
        done = self.store.committed_count(task.task_id)
        if done >= task.config.rounds:
            self.finish_task(task, "completed", f"{done} round{'' if done == 1 else 's'} committed")
            return
        if self.over_budget(task, done):
            return
        self._open_round(task, last + 1, now)
        self.opened(task, last + 1)

    def over_budget(self, task: Task, done: int) -> bool:
        """With dp_epsilon_budget: finish the task (True) when one more round or version would pass it."""
        reason = budget_stop(task, done)
        if reason:
            self.finish_task(task, "completed", reason)
        return reason is not None

    def opened(self, task: Task, num: int) -> None:
        """Round or buffer `num` opened: this replica knows it, and long-polling check-ins wake."""
        self.replicas.known_round[task.task_id] = num
        for listener in self.round_open_listeners:
            listener(task.task_id)

    def _open_round(self, task: Task, round_num: int, now: float) -> None:
        selection_deadline = now + task.config.selection_window_s
        with self.store.transaction():
            report_deadline = self.kind(task).report_deadline(task, round_num, selection_deadline)
            self.store.add_round(task.task_id, round_num, now, selection_deadline, report_deadline)

    def advance(self, task: Task, rnd: RoundRecord, now: float) -> None:
        """Move the round on by its kind's engine (on the replica that drives the task; another
        leaves it to that one's next tick)."""
        if self.holds_lease(task):
            self.kind(task).advance(task, rnd, now)

    def selection_full(self, task: Task, num: int) -> None:
        """The gateway filled the round's selection before its window closed."""
        self.kind(task).selection_full(task, num)

    def _record(self, task: Task, kind: str, data: dict) -> None:
        if self.audit is not None:
            self.audit.record(task.task_id, kind, data)

    def fail_round(self, task: Task, num: int, reason: str) -> None:
        self.transition(task, num, Event.FAILED, reason)
        self._record(task, "round_failed", {"round": num, "reason": reason})
        if self.metrics is not None:
            self.metrics.round_failed(task.task_id, reason)
        self._discard_updates(task, num)
        self._prune(task, num)
        self._next(task, num)

    def _next(self, task: Task, num: int) -> None:
        """After round `num` closed: the next round, or the next buffer's turn."""
        self.kind(task).after_close(task, num, self.clock())

    def _discard_updates(self, task: Task, num: int) -> None:
        self.kind(task).discard(task, num)
        # An evaluation report has no bytes.
        self.store.blobs.delete_objects([upd.blob for upd in self.store.updates(task.task_id, num) if upd.blob])
        self.store.blobs.remove_empty_folder(round_updates_prefix(task.task_id, num))

    def _prune(self, task: Task, num: int) -> None:
        """The task's disk retention (coordinator.rounds.retention), after round `num` ended."""
        try:
            prune_after_round(self.store, task.task_id, task.config, num,
                              lambda n: self.optimizer_state.delete(task.task_id, n))
        except OSError as exc:  # a full or read-only disk must not stop the rounds
            log.warning("task %s: retention after round %d failed: %s", task.task_id, num, exc)

    def dp_sampling_rate(self, task: Task) -> float:
        return dp_sampling_rate(task)

    # -- commit: read on the loop, compute anywhere (coordinator.rounds.commit), write on the loop -----
    def request_commit(self, task: Task, num: int) -> None:
        """The round is aggregating: commit it now, or hand it to the app's driver, which
        computes it in an executor (never inside the request of the round's last upload).
        A replica that does not drive the task leaves the aggregating round to the one that does."""
        if not self.holds_lease(task):
            return
        key = (task.task_id, num)
        if not self.defer_commits:
            self.commit(task, num)
        elif key not in self.committing and key not in self.pending_commits:
            self.pending_commits.append(key)
            for listener in self.commit_listeners:
                listener()

    def take_pending_commits(self) -> list[tuple[str, int]]:
        """The commits to run; each counts as in progress from here until commit_async ends,
        so a tick in between cannot request it a second time."""
        pending, self.pending_commits = self.pending_commits, []
        self.committing.update(pending)
        return pending

    def commit(self, task: Task, num: int) -> None:
        if not self.kind(task).trains:
            self._commit_evaluation(task, num)
            return
        started = self.clock()
        inputs = self._commit_inputs(task, num)
        if inputs is not None:
            self._apply_commit(task, num, compute_commit(inputs), started)

    async def commit_async(self, task_id: str, num: int) -> None:
        """The driver's commit: the computation in the default executor, the store on the loop."""
        task = self.tasks.get(task_id)
        started = self.clock()
        try:
            rnd = self.round_row(task_id, num)
            if task is None or rnd is None or rnd.state != RoundState.AGGREGATING:
                return  # finally: no longer in progress
            if not self.kind(task).trains:  # counts only: nothing to compute off the loop
                self._commit_evaluation(task, num)
                return
            inputs = self._commit_inputs(task, num)
            if inputs is None:
                return
            result = await asyncio.get_running_loop().run_in_executor(None, compute_commit, inputs)
            rnd = self.round_row(task_id, num)
            if rnd is None or rnd.state != RoundState.AGGREGATING:  # cancelled meanwhile
                return
            self._apply_commit(task, num, result, started)
        except Exception as exc:  # noqa: BLE001 - as in tick(): fail this round, keep driving
            if task is not None:
                self._fail_on_error(task, exc)
            else:
                log.exception("commit of %s round %d", task_id, num)
        finally:
            self.committing.discard((task_id, num))

    def _commit_inputs(self, task: Task, num: int) -> CommitInputs | None:
        try:
            strategy, bits = self.kind(task).strategy(task, num)
        except BelowThreshold as exc:
            self.fail_round(task, num, f"secagg: cannot unmask the sum: {exc}")
            return None
        if strategy.count == 0:
            self.fail_round(task, num, "no updates to aggregate")
            return None
        context = RoundContext(self.store.committed_count(task.task_id), self.dp_sampling_rate(task),
                               task.dp_clip, bits)
        control = self.store.blobs.read(task.control_sha) if task.config.scaffold else None
        return CommitInputs(strategy, context, task.manifest.weight_shapes,
                            self.store.blobs.read(task.checkpoint_sha),
                            self.optimizer_state.load(task.task_id, num - 1), control)

    def _apply_commit(self, task: Task, num: int, result: CommitResult, started: float) -> None:
        if result.failure:
            self.fail_round(task, num, result.failure)
            return
        sha = result.sha
        self.store.blobs.put(sha, result.payload)
        if result.control_payload:
            self.store.blobs.put(result.control_sha, result.control_payload)
        if result.opt_state:
            self.optimizer_state.save(task.task_id, num, result.opt_state)
        metrics = {**training_metrics(task.config, self.store.updates(task.task_id, num),
                                      self.take_served(task.task_id)), **result.metrics}
        metrics.update(self.kind(task).commit_metrics(task, num))
        if result.control_sha:
            metrics["control_sha"] = result.control_sha
        if not self.store.commit_round(task.task_id, num, self.clock(), sha, metrics):
            log.warning("task %s round %d was no longer aggregating; not committed here", task.task_id, num)
            return
        task.checkpoint_sha, task.version = sha, num
        if result.control_sha:
            task.control_sha = result.control_sha
        # The next clip takes effect only once the round that chose it is committed (as on a restart).
        task.dp_clip = metrics.get("dp_next_clip", task.dp_clip)
        self._discard_updates(task, num)
        self._prune(task, num)
        if self.metrics is not None:
            opened_at = self.store.round(task.task_id, num).opened_at
            self.metrics.round_committed(task.task_id, self.clock() - opened_at, self.clock() - started,
                                         metrics.get("epsilon"))
        log.info("task %s round %d committed: %s", task.task_id, num, metrics)
        rnd = self.store.round(task.task_id, num)
        self._record(task, "round_committed", {
            "round": num, "checkpoint_sha256": sha, "reports": metrics.get("reports"),
            "examples": rnd.examples if rnd else None,
            **{k: metrics[k] for k in ("dp_clip", "dp_noise_stddev", "epsilon", "dp_next_clip", "staleness_mean",
                                       "staleness_max", "control_sha") if k in metrics}})
        self._evaluation_due(task)
        self._next(task, num)

    def _commit_evaluation(self, task: Task, num: int) -> None:
        """An evaluation round: the reports summarized (coordinator.aggregation.evaluation), the
        checkpoint unchanged."""
        metrics = evaluation_metrics(task.config, self.store.updates(task.task_id, num))
        if metrics is None:
            self.fail_round(task, num, "no reports to aggregate")
            return
        if not self.store.commit_round(task.task_id, num, self.clock(), task.checkpoint_sha, metrics):
            return
        self._record(task, "evaluation_committed", {"of": task.config.evaluate_of,
                                                    "round": task.config.evaluate_round, **metrics})
        if self.metrics is not None:
            self.metrics.evaluation(task.config.evaluate_of, metrics)
        log.info("task %s (evaluation of %s round %d) committed: %s", task.task_id, task.config.evaluate_of,
                 task.config.evaluate_round, metrics)
        self._discard_updates(task, num)
        self._next(task, num)

    def _evaluation_due(self, task: Task) -> None:
        """After a committed training round: an evaluation every eval_every rounds and after the last."""
        cfg = task.config
        if not cfg.eval_every or not self.kind(task).trains:
            return
        done = self.store.committed_count(task.task_id)
        if done % cfg.eval_every == 0 or done >= cfg.rounds:
            for listener in self.evaluation_listeners:
                listener(task)

    def finish_task(self, task: Task, state: str, reason: str) -> None:
        self.store.set_task_state(task.task_id, state, reason)
        task.state = state
        self._record(task, "task_finished", {"state": state, "reason": reason})
        log.info("task %s %s: %s", task.task_id, state, reason)

    def active_devices(self, window_s: float = 600.0) -> int:
        return self.store.count_seen(self.clock() - window_s)
