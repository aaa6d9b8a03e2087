"""Many emulated devices in one process, each a real HTTP client of the coordinator.

Devices are coroutines on one event loop; their training runs on a `Trainer` thread
pool sized to the machine's cores, with interpreters reused across devices. An
availability model decides when each device reports itself charging / on Wi-Fi /
idle; behaviours add slow devices and mid-round dropouts. A monitor follows the
task's rounds, evaluates each committed global model on held-out data, and keeps
the history (CSV, JSON, PNG plot).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import numpy as np

from device_runtime.admin import AdminClient
from device_runtime.attacks import check_attack, poison_labels
from device_runtime.blob_cache import MemoryBlobCache
from device_runtime.client import CoordinatorClient, coordinator_urls
from device_runtime.data_fit import check_data_fits
from device_runtime.device import Behaviour, Device
from device_runtime.example_store import split_holdout
from device_runtime.fleet.availability import Availability
from device_runtime.litert_model import LocalModel, runtime_version
from device_runtime.releases import InstalledReleases
from device_runtime.trainer import Trainer
from protocol import codec
from protocol.tflite_file import read_manifest
from protocol.messages import DeviceState


@dataclass
class FleetRound:
    round: int
    state: str
    selected: int
    reported: int
    examples: int
    train_loss: float
    device_eval_accuracy: float
    global_accuracy: float
    global_loss: float
    bytes_up: int
    dropouts: int
    abandoned: int
    duration_s: float
    reason: str = ""
    epsilon: float = float("nan")  # DP spent so far (DP tasks)
    clip: float = float("nan")  # the clip norm of the round (DP tasks)
    elapsed_s: float = float("nan")  # from the task's start to this round's (version's) commit
    staleness_mean: float = float("nan")  # asynchronous tasks: of the version's updates
    bytes_down: int = 0  # what the round's devices downloaded (models, checkpoints, control variates)
    modulus_bits: int = 0  # SecAgg: the ring's bits per coordinate
    sum_bits: int = 0  # SecAgg: the bits the unmasked sum needed (the smallest ring it would not have wrapped in)


@dataclass
class FleetConfig:
    coordinator: str
    admin_token: str
    devices: int = 100
    dataset: str = "digits"
    partition: str = "dirichlet:0.3"
    availability: str = "always"
    dropout: float = 0.1
    slow_fraction: float = 0.1
    slowdown: float = 3.0
    # "fixed" (slow_fraction of the devices slowdown x slower) or "lognormal:SIGMA" (every device
    # exp(SIGMA * N(0, 1)) x slower, at least 1x: the heavy tail of real phones); see slowdowns().
    speed: str = "fixed"
    population: str = "fleet"
    holdout: float = 0.2
    workers: int | None = None
    seed: int = 0
    out_dir: str = "fleet_out"
    progress: bool = True
    retry_for_s: float = 120.0  # how long each request retries an unreachable coordinator (restarts)
    attack: str = ""  # device_runtime.attacks: what the Byzantine devices do
    attackers: float = 0.0  # the fraction of devices that are Byzantine
    # Devices come online over this many seconds (None: one second per 1,000 devices): a real
    # population never checks in at one instant, and 10,000 simultaneous first check-ins
    # took longer than a selection window to answer.
    ramp_s: float | None = None
    train_time_s: float = 0.0  # Behaviour.train_time_s: emulated phone seconds per local training
    # FedProx's straggler set-up: each round this fraction of the devices can run only a
    # uniformly random number of epochs in [1, epochs] (Behaviour.straggler).
    stragglers: float = 0.0
    keep_task: bool = False  # on a stop (Ctrl-C, SIGTERM), leave the task the fleet created running
    releases: bool = False  # devices take model releases (fedge task release) into OUT_DIR/releases/deviceN


class Fleet:
    def __init__(self, cfg: FleetConfig, data):
        self.cfg = cfg
        self.data = data
        self.trainer = Trainer(cfg.workers)
        self.cache = MemoryBlobCache()
        self.availability = Availability.parse(cfg.availability)
        self.devices: list[Device] = []
        self.history: list[FleetRound] = []
        # Federated evaluations of the task's checkpoints (eval_every): round, state, metrics.
        self.evaluations: list[dict] = []
        self.started = time.time()
        self.coordinator_peak_bytes: float | None = None
        self.task_id = ""  # the task this fleet created
        self.interrupted = False  # stopped before the task finished (Ctrl-C, SIGTERM)
        self.task_cancelled = False  # ...and its task cancelled on the way out

    def _state_fn(self, index: int, phase: float, version: str):
        def state() -> DeviceState:
            up = self.availability.available(index, phase, time.time() - self.started)
            return DeviceState(charging=up, unmetered=up, idle=up, battery=0.8 if up else 0.3,
                               free_storage_mb=4096.0, runtime="litert", runtime_version=version)
        return state

    async def _make_devices(self, session: aiohttp.ClientSession) -> None:
        rng = np.random.default_rng(self.cfg.seed)
        version = runtime_version()
        sem = asyncio.Semaphore(64)
        attack = check_attack(self.cfg.attack)
        n = len(self.data.shards)
        byzantine = set(rng.permutation(n)[:round(self.cfg.attackers * n)]) if self.cfg.attackers > 0 else set()
        num_classes = int(self.data.y_test.max()) + 1

        urls = coordinator_urls(self.cfg.coordinator)
        # Drawn from a generator of their own: the other per-device draws stay as they were.
        slow = slowdowns(self.cfg.speed, n, self.cfg.slow_fraction, self.cfg.slowdown,
                         np.random.default_rng([self.cfg.seed, 1]))

        async def make(i: int, shard) -> Device:
            evil = attack if i in byzantine else ""
            # Devices spread over the coordinator URLs (replicas), each failing over to the next.
            mine = urls[i % len(urls):] + urls[:i % len(urls)]
            client = CoordinatorClient(mine, session, retry_for_s=self.cfg.retry_for_s)
            async with sem:
                await client.register(self.cfg.population, label=f"emulated-{i}")
            return Device(
                client=client, data=split_holdout(shard[0], poison_labels(evil, shard[1], num_classes),
                                                  self.cfg.holdout, self.cfg.seed + i),
                trainer=self.trainer, state_fn=self._state_fn(i, float(rng.random()), version), cache=self.cache,
                rng=np.random.default_rng([self.cfg.seed, i]),
                behaviour=Behaviour(slowdown=float(slow[i]), dropout=self.cfg.dropout,
                                    attack=evil, train_time_s=self.cfg.train_time_s,
                                    straggler=self.cfg.stragglers),
                releases=InstalledReleases(Path(self.cfg.out_dir) / "releases" / f"device{i}", client.release_key,
                                           self.cfg.population) if self.cfg.releases else None,
            )

        self.devices = await asyncio.gather(*(make(i, s) for i, s in enumerate(self.data.shards)))

    def _evaluate(self, model: LocalModel, checkpoint: bytes) -> tuple[float, float]:
        model.set_weights(codec.unflatten(codec.decode(checkpoint).values, model.manifest.weight_shapes))
        loss, acc = model.evaluate(self.data.x_test, self.data.y_test)
        return acc, loss

    async def run(self, model_bytes: bytes, task_config: dict, task_id: str | None = None,
                  on_round=None) -> list[FleetRound]:
        check_data_fits(read_manifest(model_bytes), self.data)  # before anything reaches the coordinator
        timeout = aiohttp.ClientTimeout(total=60)
        # No pool limit: every device holds a long poll open, and a limit of 256 made the selected
        # devices' downloads and uploads queue behind the others' long polls past the deadline.
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            admin = AdminClient(self.cfg.coordinator, self.cfg.admin_token, session, self.cfg.retry_for_s)
            await admin.ensure_population(self.cfg.population)
            sha = await admin.upload_model(model_bytes)
            # Devices first: registering 10,000 takes longer than round 1's selection window.
            await self._make_devices(session)
            task = await admin.create_task(self.cfg.population, sha, task_config, task_id)
            self.task_id = task["task_id"]
            stop = asyncio.Event()
            self.started = time.time()
            ramp = self.cfg.ramp_s if self.cfg.ramp_s is not None else len(self.devices) / 1000.0
            offsets = np.random.default_rng(self.cfg.seed).uniform(0.0, ramp, len(self.devices))
            runners = [asyncio.create_task(self._start(d, float(t), stop)) for d, t in zip(self.devices, offsets)]
            try:
                await self._monitor(admin, session, task["task_id"], model_bytes, task_config["rounds"], on_round)
                self.coordinator_peak_bytes = await admin.peak_rss_bytes()
            except asyncio.CancelledError:  # stopped (Ctrl-C, SIGTERM): the task stops with the fleet
                self.interrupted = True
                if not self.cfg.keep_task:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(admin.cancel_task(self.task_id), 10.0)
                        self.task_cancelled = True
                raise
            finally:
                stop.set()
                await asyncio.gather(*runners, return_exceptions=True)
        # A device counts its bytes once the upload's answer is back, which can be just after
        # the monitor saw the round commit: settle each round's bytes now that all are in.
        for rec in self.history:
            rec.bytes_up = self._round_bytes(rec.round)
            rec.bytes_down = sum(d.stats.down_by_round.get(rec.round, 0) for d in self.devices)
        self.trainer.close()
        return self.history

    @staticmethod
    async def _start(device: Device, delay: float, stop: asyncio.Event) -> None:
        try:
            await asyncio.wait_for(stop.wait(), delay)
            return  # stopped before coming online
        except asyncio.TimeoutError:
            await device.run(stop)

    def _round_bytes(self, round_num: int) -> int:
        return sum(d.stats.bytes_by_round.get(round_num, 0) for d in self.devices)

    async def _monitor(self, admin: AdminClient, session, task_id: str, model_bytes: bytes, rounds: int,
                       on_round) -> None:
        from tqdm import tqdm

        eval_model = LocalModel(model_bytes)
        # The admin token: a population that requires enrollment or attestation guards its blobs.
        blobs = CoordinatorClient(self.cfg.coordinator, session, token=self.cfg.admin_token,
                                  retry_for_s=self.cfg.retry_for_s)
        seen: set[int] = set()
        bar = tqdm(total=rounds, desc="rounds", unit="round", disable=None if self.cfg.progress else True, leave=False)
        last_drop = last_abandon = 0
        loop = asyncio.get_running_loop()
        finished_at: dict[str, float] = {}
        while True:
            info = await admin.task(task_id)
            for r in info["rounds"]:
                if r["round"] in seen or r["state"] not in ("committed", "failed"):
                    continue
                seen.add(r["round"])
                acc = loss = float("nan")
                if r["state"] == "committed":
                    # Through the devices' cache: the next round's devices then need no download.
                    sha = r["checkpoint_sha"]
                    ck = await blobs.fetch_blob(f"/v1/blobs/{sha}", sha, self.cache)
                    acc, loss = await loop.run_in_executor(None, self._evaluate, eval_model, ck)
                up = self._round_bytes(r["round"])
                drops = sum(d.stats.dropped for d in self.devices)
                abandons = sum(d.stats.abandoned_deadline for d in self.devices)
                m = r["metrics"]
                rec = FleetRound(r["round"], r["state"], r["selected"], r["reported"], r["examples"],
                                  m.get("train_loss", float("nan")), m.get("eval_accuracy", float("nan")),
                                  acc, loss, up, drops - last_drop, abandons - last_abandon,
                                  (r["closed_at"] or 0) - r["opened_at"], r["reason"],
                                  m.get("epsilon", float("nan")), m.get("dp_clip", float("nan")),
                                  (r["closed_at"] or time.time()) - self.started,
                                  m.get("staleness_mean", float("nan")),
                                  sum(d.stats.down_by_round.get(r["round"], 0) for d in self.devices),
                                  int(m.get("secagg_modulus_bits", 0)), int(m.get("secagg_sum_bits", 0)))
                last_drop, last_abandon = drops, abandons
                self.history.append(rec)
                bar.update(1 if r["state"] == "committed" else 0)
                if on_round:
                    bar.clear()
                    on_round(rec)
                    bar.refresh()
            for ev in info.get("evaluations", []):
                if ev["state"] in ("completed", "failed", "cancelled") and \
                        ev["task_id"] not in {e["task_id"] for e in self.evaluations}:
                    self.evaluations.append(ev)
                    if on_round:
                        bar.clear()
                        on_round(ev)
                        bar.refresh()
            evals_open = any(ev["state"] == "active" for ev in info.get("evaluations", []))
            if info["state"] in ("completed", "cancelled", "failed") and not evals_open:
                # The evaluation of the last round is created as the task completes: look once more.
                if (info["config"].get("eval_every") and info["state"] == "completed"
                        and not any(ev["round"] == info["rounds_committed"] for ev in info.get("evaluations", []))
                        and loop.time() - finished_at.setdefault("t", loop.time()) < 5.0):
                    await asyncio.sleep(0.2)
                    continue
                break
            await asyncio.sleep(0.2)
        bar.close()

    def memory_summary(self) -> str:
        import resource

        fleet = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        coordinator = (f"{self.coordinator_peak_bytes / 2**20:.0f} MiB" if self.coordinator_peak_bytes
                       else "not reported")
        return (f"peak memory: fleet {fleet:.0f} MiB for {len(self.devices)} devices "
                f"({fleet * 1024 / max(len(self.devices), 1):.0f} KiB each), coordinator {coordinator}")

    def work_summary(self) -> str:
        """What became of the devices' local work: uploaded, of which partial, and cut short."""
        s = [d.stats for d in self.devices]
        return (f"local work: {sum(x.uploads for x in s)} uploads ({sum(x.partial for x in s)} partial), "
                f"{sum(x.unfinished for x in s)} cut short and not uploaded, "
                f"{sum(x.abandoned_deadline for x in s)} abandoned at the deadline, "
                f"{sum(x.rejected for x in s)} refused by the coordinator" + _by_code(s))

    def download_summary(self) -> str:
        """Both directions, as each phone would spend them (the fleet's shared cache aside)."""
        down = sum(d.stats.bytes_down for d in self.devices)
        up = sum(d.stats.bytes_up for d in self.devices)
        joined = max(1, sum(d.stats.rounds_joined for d in self.devices))
        checkpoints = max(1, sum(d.stats.checkpoints for d in self.devices))
        ckpt = sum(d.stats.checkpoint_bytes_down for d in self.devices)
        deltas = sum(d.stats.delta_downloads for d in self.devices)
        model = sum(d.stats.model_bytes_down for d in self.devices)
        fetched = max(1, sum(d.stats.model_downloads for d in self.devices))
        return (f"per device and round: {up / joined / 1024:.1f} KiB up, {down / joined / 1024:.1f} KiB down "
                f"(all devices: {up / 1024:.0f} KiB up, {down / 1024:.0f} KiB down); the checkpoint alone: "
                f"{ckpt / checkpoints / 1024:.2f} KiB a round"
                + (f", {deltas / checkpoints:.0%} of them as deltas" if deltas else "")
                + f"; the model: {model / fetched / 1024:.1f} KiB a download")

    def bytes_summary(self) -> tuple[int, int]:
        return sum(d.stats.bytes_up for d in self.devices), sum(d.stats.float32_bytes for d in self.devices)


def slowdowns(speed: str, n: int, slow_fraction: float, slowdown: float, rng: np.random.Generator) -> np.ndarray:
    """Each device's compute-time multiplier (>= 1: the host is the fastest a device gets).

    `fixed`: a `slow_fraction` of the devices are `slowdown` x slower. `lognormal:SIGMA`:
    exp(SIGMA * Z), Z ~ N(0, 1), clamped below at 1, so half the devices run at host speed
    and the rest have a heavy tail (SIGMA = 1: 1 in 20 is over 5x slower): the same
    population can then be trained synchronously and asynchronously.
    """
    kind, _, arg = speed.partition(":")
    if kind == "fixed":
        return np.where(rng.random(n) < slow_fraction, slowdown, 1.0)
    if kind == "lognormal":
        try:
            sigma = float(arg)
        except ValueError:
            sigma = -1.0
        if not 0.0 <= sigma <= 5.0:
            raise ValueError(f"--speed lognormal:SIGMA needs SIGMA in [0, 5], got {arg!r}")
        return np.maximum(1.0, np.exp(sigma * rng.standard_normal(n)))
    raise ValueError(f"unknown --speed {speed!r}; use fixed or lognormal:SIGMA")


def _by_code(stats) -> str:
    """ " (round_closed 80, duplicate 3)": the coordinator's reasons for what it refused, most first."""
    codes: dict[str, int] = {}
    for st in stats:
        for code, n in st.rejected_codes.items():
            codes[code] = codes.get(code, 0) + n
    return (" (" + ", ".join(f"{c} {n}" for c, n in sorted(codes.items(), key=lambda kv: -kv[1])) + ")"
            if codes else "")


def format_round(rec) -> str:
    if isinstance(rec, dict):  # a federated evaluation
        m = rec.get("metrics") or {}
        if rec["state"] != "completed" or "eval_accuracy" not in m:
            return f"evaluation of round {rec['round']:>3}  {rec['state'].upper()}"
        return (f"evaluation of round {rec['round']:>3}  on {m['eval_devices']} devices: accuracy "
                f"{m['eval_accuracy']:.3f}  per device p10 {m['eval_accuracy_p10']:.3f}  p50 "
                f"{m['eval_accuracy_p50']:.3f}  p90 {m['eval_accuracy_p90']:.3f}"
                + (f"  fine-tuned {m['personalized_accuracy']:.3f} (lift p50 {m['personalization_lift_p50']:+.3f})"
                   if "personalized_accuracy" in m else ""))
    if rec.state != "committed":
        return f"round {rec.round:>3}  FAILED: {rec.reason}"
    return (f"round {rec.round:>3}  selected {rec.selected:>3}  reports {rec.reported:>3}  "
            f"dropouts {rec.dropouts:>2}  late {rec.abandoned:>2}  train loss {rec.train_loss:6.3f}  "
            f"global acc {rec.global_accuracy:6.3f}  up {rec.bytes_up / 1024:7.1f} KiB  "
            f"down {rec.bytes_down / 1024:7.1f} KiB  {rec.duration_s:5.1f}s"
            + (f"  at {rec.elapsed_s:6.1f}s" if rec.elapsed_s == rec.elapsed_s else "")
            + (f"  staleness {rec.staleness_mean:4.1f}" if rec.staleness_mean == rec.staleness_mean else "")
            + (f"  eps {rec.epsilon:6.2f}" if rec.epsilon == rec.epsilon else ""))


def write_history(history: list[FleetRound], out_dir: str | Path, title: str = "fedge fleet",
                  evaluations: list[dict] | None = None) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "history.csv", "json": out / "history.json", "png": out / "history.png"}
    rows = [asdict(r) for r in history]
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(FleetRound.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(rows)
    paths["json"].write_text(json.dumps(rows, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in history if r.state == "committed"]
    fig, (ax1, ax3) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot([r.round for r in ok], [r.global_accuracy for r in ok], "o-", color="tab:blue", label="global accuracy")
    asynchronous = any(r.staleness_mean == r.staleness_mean for r in ok)  # only versions record staleness
    ax1.set_xlabel("version (asynchronous)" if asynchronous else "round")
    ax1.set_ylabel("accuracy (held-out)", color="tab:blue")
    ax1.set_ylim(0, 1)
    ax2 = ax1.twinx()
    ax2.plot([r.round for r in ok], [r.global_loss for r in ok], "s--", color="tab:red", label="global loss")
    ax2.set_ylabel("loss", color="tab:red")
    done = [e for e in evaluations or [] if (e.get("metrics") or {}).get("eval_accuracy_p50") is not None]
    if done:
        # Federated evaluation: accuracy on the devices' own data, its spread over devices.
        (out / "evaluations.json").write_text(json.dumps(done, indent=1))
        paths["evaluations"] = out / "evaluations.json"
        xs = [e["round"] for e in done]
        ax1.fill_between(xs, [e["metrics"]["eval_accuracy_p10"] for e in done],
                         [e["metrics"]["eval_accuracy_p90"] for e in done], color="tab:green", alpha=0.2,
                         label="per-device accuracy p10-p90")
        ax1.plot(xs, [e["metrics"]["eval_accuracy_p50"] for e in done], "d-", color="tab:green",
                 label="per-device accuracy p50")
        ax1.legend(loc="lower right", fontsize=7)
    ax1.set_title(title)
    ax1.grid(alpha=0.3)
    # The same curve against wall-clock time: what asynchronous aggregation is for.
    ax3.plot([r.elapsed_s for r in ok], [r.global_accuracy for r in ok], "o-", color="tab:blue", markersize=3)
    ax3.set_xlabel("seconds since the task started")
    ax3.set_ylabel("accuracy (held-out)")
    ax3.set_ylim(0, 1)
    ax3.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=110)
    plt.close(fig)
    return paths
