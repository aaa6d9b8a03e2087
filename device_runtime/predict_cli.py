"""Predict with the model release this device installed (fedge device takes releases at
check-in: verified, swapped in atomically), on examples in a file.

    fedge predict --state-dir ~/.fedge-device/HOST_PORT/POPULATION --input examples.npz
    fedge predict --coordinator http://HOST:8080 --population phones --input x.npy --output predictions.csv

Input: a .npz with an array ``x`` (the device's data format) or a .npy array of examples.
Prints which release answered, then one line per example: its index, the predicted class
(the largest output) and that output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", default=None, help="the device's state folder (as given to fedge device)")
    parser.add_argument("--coordinator", default=None, help="with --population: the default state folder's")
    parser.add_argument("--population", default=None)
    parser.add_argument("--input", required=True, help=".npz with an array x, or .npy")
    parser.add_argument("--output", default=None, help="write index,class,score lines to this CSV instead")
    parser.add_argument("--threads", type=int, default=1)


def _examples(path: str):
    import numpy as np

    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as f:
            if "x" not in f:
                raise ValueError(f"{path} has no array 'x' (it has {', '.join(f.files) or 'none'})")
            return f["x"]
    return np.load(path, allow_pickle=False)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from device_runtime.identity import default_state_dir
    from device_runtime.litert_model import InferenceModel
    from device_runtime.releases import InstalledReleases

    if args.state_dir:
        state_dir = Path(args.state_dir)
    elif args.coordinator and args.population:
        state_dir = default_state_dir(args.coordinator, args.population)
    else:
        print("fedge predict: error: give --state-dir, or --coordinator and --population", file=sys.stderr)
        return 2
    releases = InstalledReleases(state_dir / "releases", "", "")
    current, path = releases.current, releases.current_model_path()
    if current is None or path is None or not path.exists():
        print(f"fedge predict: error: no model release installed in {state_dir} yet (the device installs one "
              "when the coordinator releases a round: fedge task release)", file=sys.stderr)
        return 1
    x = _examples(args.input)
    out = InferenceModel(path.read_bytes(), args.threads).predict(x)
    scores = out.reshape(len(out), -1)
    lines = [f"{i},{int(np.argmax(row))},{float(np.max(row)):.6g}" for i, row in enumerate(scores)]
    print(f"release {current.release_id} (sequence {current.sequence}, channel {current.channel}): "
          f"{len(lines)} predictions", file=sys.stderr if args.output is None else sys.stdout)
    if args.output:
        Path(args.output).write_text("index,class,score\n" + "\n".join(lines) + "\n")
    else:
        print("\n".join(lines))
    return 0
