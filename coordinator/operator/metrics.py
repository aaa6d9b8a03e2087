"""Prometheus metrics (prometheus-client), one registry per app so tests can run several."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


def _peak_rss_bytes() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0  # KiB on Linux


FAILURE_CLASSES = (("selection window", "selection"), ("reporting deadline", "reporting"), ("secagg", "secagg"),
                   ("internal error", "internal"), ("aggregate", "aggregate"), ("no updates", "aggregate"))


def failure_class(reason: str) -> str:
    """A failed round's reason, as a label with few values."""
    return next((label for prefix, label in FAILURE_CLASSES if reason.startswith(prefix)), "other")


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.checkins = Counter("fedge_checkins_total", "Device check-ins by outcome", ["outcome"], registry=r)
        self.rejected = Counter("fedge_rejected_uploads_total", "Rejected uploads by reason", ["reason"], registry=r)
        self.bytes_in_total = Counter("fedge_bytes_in_total", "Update bytes received", registry=r)
        self.bytes_out_total = Counter("fedge_bytes_out_total", "Model/checkpoint bytes served", registry=r)
        self.active_devices = Gauge("fedge_active_devices", "Devices seen in the last 10 minutes", registry=r)
        self.round_seconds = Histogram("fedge_round_duration_seconds", "Round open -> commit",
                                       buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600), registry=r)
        self.aggregate_seconds = Histogram("fedge_commit_seconds", "Time to apply and checkpoint a round",
                                           registry=r)
        self.registrations = Counter("fedge_registrations_total", "Device registrations by outcome", ["outcome"],
                                     registry=r)
        self.clipped = Counter("fedge_clipped_updates_total", "Updates the server clipped to the task's bound",
                               ["bound"], registry=r)
        self.driver_errors = Counter("fedge_round_driver_errors_total",
                                     "Errors while driving a round (the round failed; other tasks went on)",
                                     ["error"], registry=r)
        self.peak_rss = Gauge("fedge_process_peak_rss_bytes", "The coordinator process's peak resident memory",
                              registry=r)
        self.peak_rss.set_function(_peak_rss_bytes)
        self.rounds = Counter("fedge_rounds_total", "Closed rounds by task and outcome (committed, or failed: "
                              "selection, reporting, secagg, aggregate, internal, other)", ["task", "outcome"],
                              registry=r)
        self.epsilon = Gauge("fedge_task_epsilon", "DP epsilon spent by the task so far", ["task"], registry=r)
        self.staleness_versions = Histogram("fedge_update_staleness_versions", "Asynchronous tasks: versions "
                                            "published while an accepted update trained", ["task"],
                                            buckets=(0, 1, 2, 3, 5, 8, 13, 21, 34, 55), registry=r)
        self.live_assignments = Gauge("fedge_async_live_assignments", "Asynchronous tasks: devices training now",
                                      ["task"], registry=r)
        self.concurrency_target = Gauge("fedge_async_concurrency_target", "Asynchronous tasks: the concurrency "
                                        "pace steering keeps filled", ["task"], registry=r)
        self.federated_accuracy = Gauge("fedge_federated_eval_accuracy", "The latest federated evaluation of a "
                                        "task's checkpoint on its devices: example-weighted mean and per-device "
                                        "quantiles", ["task", "stat"], registry=r)
        self.federated_devices = Gauge("fedge_federated_eval_devices", "Devices in the latest federated evaluation",
                                       ["task"], registry=r)
        self._counted: dict[tuple[str, str], Counter] = {}
        self.http_errors = Counter("fedge_http_errors_total", "Error responses by status and code",
                                   ["status", "code"], registry=r)

    def count(self, metric: str, label: str) -> None:
        # The labelled child is looked up once per (metric, label): `labels()` takes a lock and
        # builds a tuple each time, on every check-in. Labels are reasons and codes: few.
        child = self._counted.get((metric, label))
        if child is None:
            child = {"checkins": self.checkins, "rejected_uploads": self.rejected, "clipped_updates": self.clipped,
                     "driver_errors": self.driver_errors, "registrations": self.registrations}[metric].labels(label)
            self._counted[(metric, label)] = child
        child.inc()

    def bytes_in(self, n: int) -> None:
        self.bytes_in_total.inc(n)

    def bytes_out(self, n: int) -> None:
        self.bytes_out_total.inc(n)

    def round_committed(self, task_id: str, round_s: float, commit_s: float, epsilon: float | None) -> None:
        self.round_seconds.observe(round_s)
        self.aggregate_seconds.observe(commit_s)
        self.rounds.labels(task_id, "committed").inc()
        if epsilon is not None:
            self.epsilon.labels(task_id).set(epsilon)

    def staleness(self, task_id: str, versions: int) -> None:
        self.staleness_versions.labels(task_id).observe(versions)

    def concurrency(self, task_id: str, live: int, target: int) -> None:
        self.live_assignments.labels(task_id).set(live)
        self.concurrency_target.labels(task_id).set(target)

    def evaluation(self, task_id: str, metrics: dict) -> None:
        for key in ("eval_accuracy", "eval_accuracy_p10", "eval_accuracy_p50", "eval_accuracy_p90"):
            if key in metrics:
                stat = key.removeprefix("eval_accuracy").lstrip("_") or "mean"
                self.federated_accuracy.labels(task_id, stat).set(metrics[key])
        self.federated_devices.labels(task_id).set(metrics.get("eval_devices", 0))

    def round_failed(self, task_id: str, reason: str) -> None:
        self.rounds.labels(task_id, failure_class(reason)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
