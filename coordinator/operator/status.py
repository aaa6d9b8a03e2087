"""What the operator page shows, as one JSON document (`GET /v1/status`): each population
(registered devices, devices seen in the last hour, recent check-ins by outcome, the
eligible fraction and the rule clauses that fail most, the check-in rate next to what pace
steering aims at) and each task (the round in progress, the per-round history).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coordinator.gateway.pace import SAFETY
from coordinator.rounds.retention import disk_usage
from coordinator.rounds.states import OPEN_STATES, RoundState

if TYPE_CHECKING:
    from coordinator.service import Coordinator
    from coordinator.tasks.registry import Task

HISTORY_ROUNDS = 200  # the page plots the latest rounds; the admin API has them all


DISK_TTL_S = 30.0  # walking the data directory is O(files): at most twice a minute
_disk_cache: dict = {}  # id(store) or ("objects", id(blob store)) -> (when, figures)


def status(c: Coordinator) -> dict:
    now = c.clock()
    return {"now": now,
            "populations": [_population(c, p.name, now) for p in c.store.populations()],
            "tasks": [_task(c, task, now) for task in c.tasks.values()],
            "disk": _disk(c, now), "objects": _objects(c, now), "releases": _releases(c)}


RELEASES_SHOWN = 20


def _releases(c: Coordinator) -> list[dict]:
    """The newest releases of every population and channel (coordinator.releases)."""
    found = sorted(c.store.releases(), key=lambda r: (r.created_at, r.sequence), reverse=True)[:RELEASES_SHOWN]
    return [r.to_dict() for r in found]  # the record's fields, without its signature


def _disk(c: Coordinator, now: float) -> dict:
    """Bytes on disk by kind (coordinator.rounds.retention.disk_usage), cached for DISK_TTL_S."""
    cached = _disk_cache.get(id(c.store))
    if cached is None or now - cached[0] > DISK_TTL_S or now < cached[0]:
        db_path = getattr(c.store, "db_path", None)
        cached = (now, disk_usage(c.store.data_dir, str(db_path) if db_path else None))
        _disk_cache[id(c.store)] = cached
    return cached[1]


def _objects(c: Coordinator, now: float) -> dict:
    """What the blob store holds (a folder or a bucket): where, how many objects, how many
    bytes; listed at most every DISK_TTL_S (a bucket's listing is a request per 1,000 keys)."""
    key = ("objects", id(c.store.blobs))
    cached = _disk_cache.get(key)
    if cached is None or now - cached[0] > DISK_TTL_S or now < cached[0]:
        try:
            usage = c.store.blobs.usage()
        except Exception as exc:  # noqa: BLE001 - the page shows that the store did not answer
            usage = {"objects": None, "bytes": None, "error": str(exc).splitlines()[0][:200]}
        cached = (now, {"location": c.store.blobs.location, **usage})
        _disk_cache[key] = cached
    return cached[1]


def _population(c: Coordinator, name: str, now: float) -> dict:
    active = [t for t in c.tasks.values() if t.population == name and t.state == "active"]
    aimed = None
    if active:
        # Pace steering spreads returns so that SAFETY x K devices arrive per round period
        # (coordinator.gateway.pace), as long as the retry window is inside its clamps.
        _, period = c.gateway.pace_steering.inputs(active[0], now)
        aimed = SAFETY * active[0].config.target_selected / max(period, 1e-9)
    return {"name": name, "registered": c.store.count_devices(name),
            "seen_last_hour": c.store.count_seen(now - 3600.0, name),
            "checkins": c.gateway.activity.summary(name, now), "aimed_checkins_per_s": aimed}


def _task(c: Coordinator, task: Task, now: float) -> dict:
    rounds = c.store.recent_rounds(task.task_id, HISTORY_ROUNDS)
    rounds.sort(key=lambda r: r.round)
    current = None
    if rounds and rounds[-1].state in OPEN_STATES:
        r, cfg = rounds[-1], task.config
        current = {"round": r.round, "state": r.state, "selected": r.selected, "target_selected": cfg.target_selected,
                   "reported": r.reported, "goal": cfg.goal_count, "required": cfg.required_reports,
                   "opened_s_ago": now - r.opened_at,
                   "selection_deadline_in_s": r.selection_deadline - now,
                   "report_deadline_in_s": r.report_deadline - now}
    if task.config.asynchronous:
        current = _buffers(c, task, rounds, now)
    history = []
    for r in rounds:
        if r.state not in (RoundState.COMMITTED, RoundState.FAILED):
            continue
        m = r.metrics
        history.append({"round": r.round, "state": r.state, "reason": r.reason, "reports": r.reported,
                        "examples": r.examples, "duration_s": (r.closed_at or now) - r.opened_at,
                        "eval_accuracy": m.get("eval_accuracy"), "eval_loss": m.get("eval_loss"),
                        "train_loss": m.get("train_loss"), "bytes_in": m.get("bytes_in"),
                        "bytes_out": m.get("bytes_out"),
                        "epsilon": m.get("epsilon"), "staleness_mean": m.get("staleness_mean")})
    return {"task_id": task.task_id, "population": task.population, "state": task.state,
            "mode": task.config.mode, "kind": task.config.kind,
            "evaluations": [] if task.config.evaluation else c.admin.evaluations(task.task_id)[-5:],
            "reason": c.store.task(task.task_id).reason, "model_name": task.manifest.model_name,
            "rounds": task.config.rounds, "rounds_committed": c.store.committed_count(task.task_id),
            "current": current, "history": history}


VERSION_RATE_WINDOW = 10  # versions per minute over the last this many commits
STALENESS_WINDOW = 20  # the staleness histogram covers the last this many versions


def _buffers(c: Coordinator, task: Task, rounds: list, now: float) -> dict:
    """An asynchronous task now: the open buffer, devices training against the concurrency
    target, versions per minute, the staleness of recent versions' updates, refused stale
    updates (counted by this replica)."""
    cfg = task.config
    open_buffers = [r for r in rounds if r.state in OPEN_STATES]
    buffer = next((r for r in reversed(open_buffers) if r.state == RoundState.REPORTING), None)
    committed = [r for r in rounds if r.state == RoundState.COMMITTED]
    recent = committed[-VERSION_RATE_WINDOW:]
    rate = None
    if len(recent) >= 2 and recent[-1].closed_at and recent[0].closed_at and recent[-1].closed_at > recent[0].closed_at:
        rate = (len(recent) - 1) / (recent[-1].closed_at - recent[0].closed_at) * 60.0
    counts: dict[str, int] = {}
    for r in committed[-STALENESS_WINDOW:]:
        for s, n in r.metrics.get("staleness_counts", {}).items():
            counts[s] = counts.get(s, 0) + int(n)
    return {"mode": "async", "round": buffer.round if buffer else None, "state": buffer.state if buffer else "none",
            "reported": buffer.reported if buffer else 0, "goal": cfg.buffer_goal,
            "aggregating": [r.round for r in open_buffers if r.state == "aggregating"],
            "live": c.store.live_assignments(task.task_id, now - cfg.report_deadline_s),
            "concurrency": cfg.target_concurrency, "versions_per_min": rate,
            "staleness_counts": dict(sorted(counts.items(), key=lambda kv: int(kv[0]))),
            "max_staleness": cfg.max_staleness, "stale_refused": c.gateway.buffered.stale_refused.get(task.task_id, 0),
            "opened_s_ago": now - buffer.opened_at if buffer else None}
