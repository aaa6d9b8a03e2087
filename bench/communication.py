"""Bytes on the wire, both directions, and what each codec costs in accuracy.

Every row is a real `fedge serve` and a fleet of 100 LiteRT devices (digits, Dirichlet(0.5),
10% dropout, goal 40 of 52, 10 epochs, as `fedge demo`) trained for --rounds rounds with one
upload codec (and, with SecAgg, its masked ring), one download codec:

    python bench/communication.py [--rounds 40] [--rows f32 q8 q4+rot q4+rot+sparse:0.1 ...]
                                  [--secagg-rows q8 q8+sparse:0.25] [--model digits_mlp|emnist_cnn]

A row is ``UPLOAD[/DOWNLOAD[/DELTA]]`` (download f32 unless given, e.g. ``q4+rot+sparse:0.1/q8``;
with DELTA, devices holding an earlier full download fetch the difference in that codec, and
the row's download bytes are measured: what the devices spent on checkpoints per round).
Prints per row: bytes a device uploads per round (and x fewer than float32), the checkpoint
it downloads per round (and x fewer than float32), the model it downloads once (weights
zeroed, gzip), what a device spent in all over the run (both directions, and the rounds it
joined), the final global accuracy (mean of the
last five committed rounds) and its difference from the float32 row; writes a Markdown table,
the histories and an accuracy-vs-upload-bytes plot to --out. ``--model emnist_cnn`` trains
the zoo's EMNIST-shaped CNN on the digits drawn at 28x28 (no EMNIST download here).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import secrets
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEFAULT_ROWS = ["f32", "q8", "q4", "q4+rot", "q4+rot+sparse:0.25", "q4+rot+sparse:0.1", "q4+rot+sparse:0.03",
                "q4+rot+sparse:0.1/q8"]
DEFAULT_SECAGG_ROWS = ["q8", "q8+sparse:0.25", "q8+sparse:0.1"]


def as_images(data):
    """The digits (8x8) drawn at 28x28x1: each pixel a 3x3 block, 2 pixels of border."""
    from device_runtime.fleet.datasets import FederatedData

    def draw(x):
        img = x.reshape(-1, 8, 8)
        big = np.kron(img, np.ones((1, 3, 3), np.float32))
        return np.pad(big, ((0, 0), (2, 2), (2, 2)))[..., None].astype(np.float32)

    return FederatedData(data.name + "@28x28", [(draw(x), y) for x, y in data.shards], draw(data.x_test),
                         data.y_test, data.num_classes)


def export(model_name: str, out: Path) -> bytes:
    import subprocess

    path = out / f"{model_name}.tflite"
    if not path.exists():
        subprocess.run([sys.executable, "-m", "fedge", "export", "--zoo", model_name, "-o", str(path)], check=True)
    return path.read_bytes()


def run_row(row: str, secagg: str, model: bytes, data, args, out: Path) -> dict:
    from device_runtime.fleet.emulator import Fleet, FleetConfig
    from fedge.local_coordinator import LocalCoordinator
    from protocol import codec
    from protocol.tflite_file import read_manifest

    upload, _, download = row.partition("/")
    download, _, delta = download.partition("/")
    download = download or "f32"
    token = secrets.token_urlsafe(16)
    work = out / f"{secagg}-{row.replace('/', '_').replace(':', '')}"
    work.mkdir(parents=True, exist_ok=True)
    for stale in work.glob("c.db*"):  # a fresh coordinator for every row
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    with open(work / "coordinator.log", "w") as log:
        server = LocalCoordinator(str(work / "c.db"), token, log=log, extra_args=(
            "--min-retry-s", "0.3", "--max-retry-s", "3", "--ineligible-retry-s", "2", "--checkin-rate", "20"))
        try:
            server.start()
            cfg = FleetConfig(coordinator=server.url, admin_token=token, devices=args.devices,
                              partition="dirichlet:0.5", dropout=0.1, seed=args.seed, out_dir=str(work), holdout=0.1,
                              progress=False)
            task = {"rounds": args.rounds, "goal_count": args.goal_count, "over_selection": 1.3,
                    "selection_window_s": 2.0, "report_deadline_s": 30.0,
                    "eligibility": "charging and unmetered and idle", "epochs": args.epochs, "batch_size": 32,
                    "learning_rate": args.learning_rate, "codec": upload, "download_codec": download,
                    "download_delta_codec": delta, "chunk_size": args.chunk_size}
            if args.server_optimizer:
                task["server_optimizer"] = json.loads(args.server_optimizer)
            if secagg != "off":
                task.update(secagg=secagg, clip_norm=args.clip_norm, secagg_phase_s=args.secagg_phase_s)
            fleet = Fleet(cfg, data)
            started = time.time()
            history = asyncio.run(fleet.run(model, task, task_id="comm"))
            wall = time.time() - started
        finally:
            server.stop()
    committed = [r for r in history if r.state == "committed"]
    with open(work / "history.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["round", "global_accuracy", "reports", "bytes_up", "bytes_down"])
        for r in committed:
            w.writerow([r.round, r.global_accuracy, r.reported, r.bytes_up, r.bytes_down])
    manifest = read_manifest(model)
    counts = [w.size for w in manifest.weights]
    n = sum(counts)
    measured_up = sum(r.bytes_up for r in committed) / max(1, sum(r.reported for r in committed))
    # Under SecAgg the masked codes take k = 8 + ceil(log2 n) bits each, n the round's roster:
    # what the devices sent, as measured; otherwise the codec's exact size.
    chunk = args.chunk_size
    up = round(measured_up) if secagg != "off" else codec.CodecSpec.parse(upload, chunk).max_payload_bytes(len(counts), n)
    down = codec.CodecSpec.parse(download, chunk).max_payload_bytes(len(counts), n)
    if delta:  # a mix of full downloads and deltas: as measured, per device and checkpoint
        down = round(sum(d.stats.checkpoint_bytes_down for d in fleet.devices)
                     / max(1, sum(d.stats.checkpoints for d in fleet.devices)))
        download = f"{download}, deltas {delta}"
    final = float(np.mean([r.global_accuracy for r in committed[-5:]])) if committed else float("nan")
    # What each device spent on the wire over the run (both directions, the model once), and the
    # model download alone (weights zeroed, gzip), as measured by the devices.
    joined = [d.stats for d in fleet.devices if d.stats.rounds_joined]
    spent = sum(x.bytes_down + x.bytes_up for x in joined) / max(1, len(joined))
    model_down = round(sum(x.model_bytes_down for x in joined) / max(1, sum(x.model_downloads for x in joined)))
    return {"row": row, "secagg": secagg, "upload": upload, "download": download, "up": up, "down": down,
            "model_down": model_down, "spent": spent, "rounds_per_device": sum(x.rounds_joined for x in joined)
            / max(1, len(joined)),
            "measured_up": measured_up, "f32": 4 * n + 24 + 4 * len(counts), "final": final,
            "committed": len(committed), "wall_s": wall, "curve": [r.global_accuracy for r in committed]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", nargs="*", default=DEFAULT_ROWS, help="UPLOAD[/DOWNLOAD] codecs without SecAgg")
    ap.add_argument("--secagg-rows", nargs="*", default=DEFAULT_SECAGG_ROWS,
                    help="upload codecs under SecAgg (its 8-bit ring; +sparse:F keeps a subset)")
    ap.add_argument("--model", choices=["digits_mlp", "emnist_cnn"], default="digits_mlp")
    ap.add_argument("--dataset", default="digits", help="digits, or digits:xN (N-fold augmented, for 1,000 devices)")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--goal-count", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--learning-rate", type=float, default=None,
                    help="device learning rate (default: 0.08 for digits_mlp's SGD as in fedge demo, the model's "
                         "compiled 0.001 for emnist_cnn's Adam)")
    ap.add_argument("--clip-norm", type=float, default=3.0, help="the L2 clip under SecAgg")
    ap.add_argument("--secagg-phase-s", type=float, default=2.0,
                    help="each SecAgg phase's deadline (raise it for hundreds of selected devices on few cores)")
    ap.add_argument("--chunk-size", type=int, default=256, help="the task's chunk_size (quantization chunks, both ways)")
    ap.add_argument("--server-optimizer", default="", metavar="JSON",
                    help='the task\'s server_optimizer, e.g. \'{"name": "fedavgm", "learning_rate": 0.5, "momentum": 0.9}\'')
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench_out/communication")
    args = ap.parse_args()
    if args.learning_rate is None:
        args.learning_rate = {"digits_mlp": 0.08, "emnist_cnn": 0.001}[args.model]

    from device_runtime.fleet.datasets import load_federated

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = export(args.model, out)
    data = load_federated(args.dataset, args.devices, "dirichlet:0.5", args.seed)
    if args.model == "emnist_cnn":
        data = as_images(data)
    rows = [(r, "off") for r in args.rows] + [(r, "secagg") for r in args.secagg_rows]
    results = []
    for row, secagg in rows:
        res = run_row(row, secagg, model, data, args, out)
        results.append(res)
        print(f"{row:<24} secagg {secagg:<6} up {res['up']:>8,} B  down {res['down']:>8,} B  "
              f"final {res['final']:.3f}  ({res['committed']} rounds, {res['wall_s']:.0f} s); the model "
              f"{res['model_down']:,} B a download; a device spent {res['spent'] / 1024:,.1f} KiB in all over "
              f"{res['rounds_per_device']:.1f} rounds", flush=True)
    base = next((r for r in results if r["row"] == "f32" and r["secagg"] == "off"), results[0])
    lines = [f"{args.model}, {args.dataset} Dirichlet(0.5), {args.devices} devices, goal {args.goal_count}, "
             f"{args.rounds} rounds, {args.epochs} epochs, lr {args.learning_rate:g}; final = mean global accuracy "
             "of the last five rounds", "",
             "| upload | SecAgg | download | up B/device/round | x fewer up | down B/round | x fewer down "
             "| model B a download | KiB a device spent (rounds) | final accuracy | vs f32 |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| `{r['upload']}` | {r['secagg']} | `{r['download']}` | {r['up']:,} | {r['f32'] / r['up']:.1f} "
                     f"| {r['down']:,} | {r['f32'] / r['down']:.1f} | {r['model_down']:,} | "
                     f"{r['spent'] / 1024:,.1f} ({r['rounds_per_device']:.1f}) | {r['final']:.3f} | "
                     f"{(r['final'] - base['final']) * 100:+.1f} pt |")
    table = "\n".join(lines)
    print()
    print(table)
    (out / f"communication_{args.model}.md").write_text(table + "\n")
    plot(results, out / f"communication_{args.model}.png", args)


def plot(results: list[dict], path: Path, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, curves) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in results:
        marker = "s" if r["secagg"] != "off" else "o"
        ax.scatter(r["up"], r["final"], marker=marker)
        ax.annotate(r["row"] + (" (SecAgg)" if r["secagg"] != "off" else ""), (r["up"], r["final"]), fontsize=7,
                    xytext=(4, 2), textcoords="offset points")
        curves.plot(range(1, len(r["curve"]) + 1), r["curve"], lw=1,
                    label=r["row"] + (" SecAgg" if r["secagg"] != "off" else ""))
    ax.set_xscale("log")
    ax.set_xlabel("bytes a device uploads per round (log)")
    ax.set_ylabel(f"final global accuracy (last 5 of {args.rounds} rounds)")
    ax.set_title(f"{args.model}: accuracy vs upload size")
    curves.set_xlabel("round")
    curves.set_ylabel("global accuracy")
    curves.set_ylim(0, 1)
    curves.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
