"""Export a Keras model to ONE `.tflite` that trains on the stock LiteRT runtime.

MODEL is a `.keras` file, or `package.module:factory` returning a compiled Keras
model; or use --zoo NAME for a built-in model. The file gets train, infer, evaluate,
get_weights and set_weights signatures and an embedded manifest; a parity report
compares K LiteRT training steps with Keras.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

ZOO_NAMES = ("digits_mlp", "synthetic_mlp", "emnist_cnn", "next_token_lstm")  # model_export.zoo.ZOO, without keras


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="a .keras file or package.module:factory")
    parser.add_argument("--zoo", choices=ZOO_NAMES, help="export a built-in model instead")
    parser.add_argument("-o", "--output", required=True, help="where to write the .tflite")
    parser.add_argument("--manifest-json", help="also write the manifest as JSON here")
    parser.add_argument("--batch-size", type=int, default=32, help="static batch size of the signatures (default 32)")
    parser.add_argument("--parity-steps", type=int, default=3, help="training steps compared with Keras (0 skips)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="parity tolerance (default 1e-4)")
    parser.add_argument("--personal", nargs="+", default=[], metavar="LAYER",
                        help="layers that train on the device but never travel (FedPer personal layers): devices keep "
                             "them between rounds and never upload them")
    parser.add_argument("--dp-sgd", action="store_true",
                        help="also export train_dp, an example-level DP-SGD step (per-example clipping and Gaussian "
                             "noise, Abadi et al. 2016) that devices run when a task sets dp_sgd_noise_multiplier")
    parser.add_argument("--dp-microbatches", type=int, default=0, metavar="M",
                        help="with --dp-sgd: clip per microbatch of batch-size/M examples (default: the batch size, "
                             "one example each; fewer is faster, and the guarantee then protects a microbatch)")
    parser.add_argument("--allow-flex", action="store_true",
                        help="export even if the train step needs Flex (TF) ops; stock LiteRT cannot run it")


def _check_output(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise _error(f"output folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise _error(f"output path {path} is not writable")


def _error(message: str):
    from model_export.errors import ExportError

    return ExportError(message)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if bool(args.model) == bool(args.zoo):
        raise _error("give exactly one of MODEL or --zoo NAME")
    if args.dp_microbatches and not args.dp_sgd:
        raise _error("--dp-microbatches needs --dp-sgd")
    dp_microbatches = (args.dp_microbatches or args.batch_size) if args.dp_sgd else 0
    output = Path(args.output)
    _check_output(output)
    from model_export.quiet import native_stderr_silenced

    with native_stderr_silenced(enabled=not args.debug):
        from model_export.exporter import export_model
        from model_export.loading import load_model

        model = load_model(args.model, args.zoo)
        started = time.monotonic()

        def progress(stage: str) -> None:
            print(f"[{time.monotonic() - started:5.1f}s] {stage}...", flush=True)

        result = export_model(model, name=args.zoo or None, batch_size=args.batch_size,
                              allow_flex=args.allow_flex, parity_steps=args.parity_steps, tolerance=args.tolerance,
                              progress=progress, personal=tuple(args.personal),
                              dp_microbatches=dp_microbatches)
    m = result.manifest
    print(f"model {m.model_name}: {m.num_parameters:,} parameters in {len(m.weights)} tensors travel in updates, "
          f"batch {m.batch_size}, loss {m.loss}, optimizer {m.optimizer['name']}")
    if dp_microbatches:
        print(f"  train_dp: example-level DP-SGD over {dp_microbatches} microbatches of "
              f"{m.batch_size // dp_microbatches} (tasks turn it on with dp_sgd_noise_multiplier and dp_sgd_clip)")
    personal = sum(w.size for w in m.personal)
    if personal:
        print(f"  {personal:,} parameters in personal layers ({', '.join(args.personal)}) train on the device and "
              "never travel")
    frozen = result.model_parameters - m.num_parameters - personal
    if frozen > 0:
        print(f"  {frozen:,} frozen parameters stay in the file and never travel "
              f"(an update is {m.num_parameters / result.model_parameters:.1%} of the model)")
    if m.requires_flex:
        print(f"WARNING: needs Flex ops {', '.join(m.flex_ops)}: the stock LiteRT runtime cannot train it")
    if result.parity is not None:
        print(result.parity.render())
        if not result.parity.passed:
            raise _error(f"parity check failed (tolerance {args.tolerance}); nothing written")
    output.write_bytes(result.tflite)
    if args.manifest_json:
        Path(args.manifest_json).write_text(m.to_json())
    print(f"wrote {output} ({len(result.tflite):,} bytes, sha256 {m.content_sha256[:16]}...)")
    return 0
