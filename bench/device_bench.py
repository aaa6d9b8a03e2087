"""LiteRT `train` step time of the zoo models, natively and on the emulated Raspberry Pi.

    python bench/device_bench.py [--steps 30] [--models digits_mlp,emnist_cnn] [--native-only]

Exports each zoo model on the host (TensorFlow), then times the same device-side code
(`device_runtime.litert_model.LocalModel.train`, the `train` signature through
ai-edge-litert) in two processes: the host's Python, and the aarch64 Debian root's Python
under QEMU user-mode emulation (scripts/pi-emulated.sh, built on first use).

Emulation translates every aarch64 instruction on an x86 core, so the emulated column is
an upper bound for a Raspberry Pi 5 (4x Cortex-A76, 2.4 GHz), not a measurement of one;
it shows the runtime runs there and roughly what a round costs relative to this host.
The worker mode (--worker) imports only numpy and LiteRT so it runs inside the Pi root.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PI_SCRIPT = REPO / "scripts" / "pi-emulated.sh"


def time_steps(path: str, steps: int, threads: int) -> dict:
    """Mean seconds per train step after one warm-up step (runs on the device side)."""
    sys.path.insert(0, str(REPO))
    from device_runtime.litert_model import LocalModel

    model = LocalModel(Path(path).read_bytes(), num_threads=threads)
    m = model.manifest
    rng = np.random.default_rng(0)
    n = m.batch_size * steps
    if m.input.dtype == "int32":
        x = rng.integers(0, 10, size=(n, *m.input.shape)).astype(np.int32)
    else:
        x = rng.normal(size=(n, *m.input.shape)).astype(np.float32)
    y = rng.integers(0, max(m.num_classes or 1, 1), size=(n,)).astype(np.int32)
    model.train(x[: m.batch_size], y[: m.batch_size], epochs=1, learning_rate=0.01, rng=rng)  # warm-up
    started = time.perf_counter()
    model.train(x, y, epochs=1, learning_rate=0.01, rng=rng)
    step_s = (time.perf_counter() - started) / steps
    params = sum(int(np.prod(w.shape)) for w in m.weights)
    return {"model": Path(path).stem, "step_s": step_s, "batch": m.batch_size, "params": params}


def export_zoo(names: list[str], out: Path) -> list[Path]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from model_export.exporter import export_model
    from model_export.zoo import ZOO

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = out / f"{name}.tflite"
        path.write_bytes(export_model(ZOO[name](), name=name, parity_steps=0).tflite)
        paths.append(path)
    return paths


def run_worker(prefix: list[str], paths: list[Path], steps: int, threads: int) -> dict[str, dict]:
    cmd = [*prefix, str(Path(__file__).resolve()), "--worker", "--steps", str(steps), "--threads", str(threads),
           *map(str, paths)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"worker failed ({' '.join(prefix)}):\n{res.stderr[-2000:]}")
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    return {row["model"]: row for row in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="digits_mlp,emnist_cnn,next_token_lstm")
    parser.add_argument("--steps", type=int, default=30, help="timed train steps per model")
    parser.add_argument("--threads", type=int, default=1, help="LiteRT threads (a Pi 5 has 4 cores)")
    parser.add_argument("--native-only", action="store_true", help="skip the emulated Pi")
    parser.add_argument("--out", default="bench_out/device_bench")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        for path in args.paths:
            print(json.dumps(time_steps(path, args.steps, args.threads)), flush=True)
        return

    paths = export_zoo(args.models.split(","), REPO / args.out)
    native = run_worker([sys.executable], paths, args.steps, args.threads)
    emulated: dict[str, dict] = {}
    setup_s = None
    if not args.native_only:
        started = time.perf_counter()
        subprocess.run(["bash", str(PI_SCRIPT), "setup"], check=True, env={**os.environ, "FEDGE_PI_PYTHON": sys.executable})
        setup_s = time.perf_counter() - started
        emulated = run_worker(["bash", str(PI_SCRIPT), "python"], paths, args.steps, args.threads)

    print(f"\nLiteRT train step, {args.steps} steps, {args.threads} thread(s); "
          "round = 1 epoch over 200 local examples")
    print(f"{'model':18} {'params':>9} {'batch':>5} {'native ms':>10} {'emulated ms':>12} {'slowdown':>9} "
          f"{'round native ms':>16} {'round emulated ms':>18}")
    for path in paths:
        name = path.stem
        n = native[name]
        steps_per_round = -(-200 // n["batch"])
        e = emulated.get(name)
        emu_ms = f"{e['step_s'] * 1e3:12.1f}" if e else f"{'-':>12}"
        slow = f"{e['step_s'] / n['step_s']:8.1f}x" if e else f"{'-':>9}"
        emu_round = f"{e['step_s'] * steps_per_round * 1e3:18.1f}" if e else f"{'-':>18}"
        print(f"{name:18} {n['params']:9d} {n['batch']:5d} {n['step_s'] * 1e3:10.2f} {emu_ms} {slow} "
              f"{n['step_s'] * steps_per_round * 1e3:16.2f} {emu_round}")
    if setup_s is not None:
        print(f"\nemulated Pi root ready in {setup_s:.1f} s (cached after the first run: scripts/pi-emulated.sh path)")


if __name__ == "__main__":
    main()
