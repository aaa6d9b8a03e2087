"""The `fedge` console script: one entry point, sub-commands owned by the packages.

Each sub-command module exposes ``configure(parser)`` and ``run(args) -> int`` and keeps
heavy imports inside ``run`` so that `fedge device` never loads TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from fedge import __version__

SUBCOMMANDS = {
    "export": ("model_export.cli", "export a Keras model to a trainable .tflite"),
    "serve": ("coordinator.cli", "run the coordinator service"),
    "device": ("device_runtime.cli", "run the reference device runtime"),
    "predict": ("device_runtime.predict_cli", "predict with the model release a device installed"),
    "fleet": ("device_runtime.fleet.cli", "run many emulated devices against a coordinator"),
    "population": ("fedge.population_cli", "create and list populations on a coordinator"),
    "task": ("fedge.task_cli", "create, list, show, pause/resume/cancel, download and watch tasks"),
    "release": ("fedge.release_cli", "list, show, promote and roll back model releases"),
    "audit": ("fedge.audit_cli", "fetch the audit key, export a task's audit trail, verify one offline"),
    "simulate": ("simulation.cli", "the production coordinator and a simulated population on a virtual clock"),
    "demo": ("fedge.demo", "export, serve and train a 100-device fleet end to end"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedge", description="Cross-device federated learning on LiteRT.")
    parser.add_argument("--version", action="version", version=f"fedge {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        # Raw: each module's docstring has example command lines, one a line, kept as written.
        sub = subparsers.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip(),
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
        module.configure(sub)
        sub.set_defaults(_module=module)
    return parser


def raise_open_file_limit() -> None:
    """Every device of a population holds a connection (long polls) on the coordinator and in
    an emulated fleet: take the hard limit of open files instead of the soft 1,024."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard))
    except (ImportError, ValueError, OSError):
        pass  # not on this platform, or not allowed: the soft limit stays


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    raise_open_file_limit()
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line unless --debug; the modules raise typed errors
        if args.debug:
            raise
        # Some exceptions (timeouts, a dropped connection) have no message: name them instead.
        print(f"fedge {args.command}: error: {str(exc) or type(exc).__name__}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
