"""Run the reference device runtime on this Linux device (Raspberry Pi OS and the like).

Registers once (the token is kept in --state-dir), then loops: check in with the real
device state, obey 'come back at T', download and cache the model by content hash,
train through LiteRT, upload a quantized update before the deadline. Probes can be
overridden with the flags below or FEDGE_CHARGING / FEDGE_UNMETERED / FEDGE_IDLE /
FEDGE_BATTERY.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import sys
from pathlib import Path


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError("expected true/false")


DEFAULT_STATE_ROOT = Path.home() / ".fedge-device"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--coordinator", required=True, help="coordinator base URL")
    parser.add_argument("--population", required=True, help="the population this device registers in")
    parser.add_argument("--data", required=True, help="folder of .npz files with arrays x and y")
    parser.add_argument("--state-dir", default=None,
                        help="where this device's identity (token), model cache and local state live; default "
                             f"{DEFAULT_STATE_ROOT}/HOST_PORT/POPULATION, one identity per coordinator and population")
    parser.add_argument("--enrollment-secret", default=os.environ.get("FEDGE_ENROLLMENT_SECRET", ""),
                        help="the population's enrollment secret, needed to register in a population created with one "
                             "(or FEDGE_ENROLLMENT_SECRET; used once, at registration)")
    parser.add_argument("--attestation-file", default=os.environ.get("FEDGE_ATTESTATION_FILE", ""),
                        help="a file holding this device's attestation token, for a population that requires "
                             "attestation (or FEDGE_ATTESTATION_FILE; see docs/devices.md)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no line per check-in and round, warnings only")
    parser.add_argument("--holdout", type=float, default=0.2, help="fraction kept for local evaluation (default 0.2)")
    parser.add_argument("--rounds", type=int, default=None, help="stop after this many uploads (default: run until stopped)")
    parser.add_argument("--charging", type=_bool, default=None, help="override the charging probe")
    parser.add_argument("--unmetered", type=_bool, default=None, help="override the network probe")
    parser.add_argument("--idle", type=_bool, default=None, help="override the idle probe")
    parser.add_argument("--battery", type=float, default=None, help="override the battery level (0..1)")
    parser.add_argument("--threads", type=int, default=1, help="training threads (default 1)")
    parser.add_argument("--min-dp-noise-multiplier", type=float, default=0.0, metavar="Z",
                        help="take part only in distributed-DP rounds whose devices' noise adds up to at least Z "
                             "times the sensitivity (checked on the device, not trusting the coordinator's "
                             "min_reports); 0 (default): no floor")
    parser.add_argument("--retry-for-s", type=float, default=120.0,
                        help="how long each request retries while the coordinator is unreachable or answers 5xx; "
                             "the device then waits and tries again (default 120)")
    parser.add_argument("--release-channel", default="stable",
                        help="the channel of model releases this device installs for inference (default stable; "
                             "`fedge predict` uses the installed one)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")


async def _main(args) -> int:
    import aiohttp
    import numpy as np

    from device_runtime.blob_cache import DiskBlobCache
    from device_runtime.identity import DeviceIdentity, default_state_dir
    from device_runtime.client import CoordinatorClient
    from device_runtime.device import Device
    from device_runtime.example_store import load_example_store
    from device_runtime.litert_model import runtime_version
    from device_runtime.releases import InstalledReleases
    from device_runtime.probes import probe_state
    from device_runtime.trainer import Trainer

    state_dir = Path(args.state_dir) if args.state_dir else default_state_dir(args.coordinator, args.population)
    state_dir.mkdir(parents=True, exist_ok=True)
    identity = DeviceIdentity(state_dir)
    identity.check(args.coordinator, args.population)  # before anything reaches the coordinator
    data = load_example_store(args.data, holdout=args.holdout)
    overrides = {"charging": args.charging, "unmetered": args.unmetered, "idle": args.idle, "battery": args.battery}
    version = runtime_version()
    trainer = Trainer(args.threads)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        client = CoordinatorClient(args.coordinator, session, retry_for_s=args.retry_for_s)
        if identity.token:
            client.token = identity.token
        else:
            attestation = Path(args.attestation_file).read_text().strip() if args.attestation_file else ""
            token = await client.register(args.population, label=f"fedge-device {platform.machine()}",
                                          enrollment_secret=args.enrollment_secret, attestation=attestation)
            identity.save(args.coordinator, args.population, token, client.release_key)
            logging.getLogger("fedge.device").info("registered in population %s at %s (identity in %s)",
                                                   args.population, args.coordinator, state_dir)
        device = Device(client=client, data=data, trainer=trainer, state_fn=lambda: probe_state(version, overrides),
                        cache=DiskBlobCache(state_dir / "cache"), rng=np.random.default_rng(),
                        state_dir=state_dir / "local", min_dp_noise=args.min_dp_noise_multiplier,
                        releases=InstalledReleases(state_dir / "releases", identity.release_key, args.population,
                                                   args.release_channel))
        stop = asyncio.Event()
        logging.getLogger("fedge.device").info("device running: %d training / %d holdout examples",
                                               len(data.x_train), len(data.x_eval))
        await device.run(stop, max_rounds=args.rounds)
        s = device.stats
        print(f"fedge device on {platform.machine()} with ai-edge-litert {version}: uploads {s.uploads}, "
              f"abandoned {s.abandoned_deadline}, bytes up {s.bytes_up} "
              f"({s.bytes_up / max(s.float32_bytes, 1):.1%} of float32)")
    trainer.close()
    return 0


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.quiet:
        logging.getLogger("fedge.device").setLevel(logging.WARNING)
    from device_runtime.client import RequestRefused
    from device_runtime.identity import IdentityMismatch

    try:
        return asyncio.run(_main(args))
    except IdentityMismatch as exc:
        print(f"fedge device: error: {exc}", file=sys.stderr)
        return 2
    except RequestRefused as exc:  # registration refused: say why, once
        print(f"fedge device: error: the coordinator refused this device: {exc}", file=sys.stderr)
        return 1
