"""Audit trails: fetch the coordinator's public key, export a task's trail, and verify a
trail offline (no coordinator needed): the hash chain and every Ed25519 signature, naming the
first entry that fails.

    fedge audit key -o coordinator.pem
    fedge audit export TASK_ID -o trail.json
    fedge audit verify trail.json --key coordinator.pem
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fedge.admin_http import AdminApi, AdminError, add_connection_args, emit


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    key = sub.add_parser("key", help="download the public key that signs audit trails (PEM)")
    key.add_argument("-o", "--output", required=True)
    add_connection_args(key)
    export = sub.add_parser("export", help="write a task's audit trail to a file (JSON)")
    export.add_argument("task_id")
    export.add_argument("-o", "--output", required=True)
    add_connection_args(export)
    verify = sub.add_parser("verify", help="check a trail's chain and signatures offline")
    verify.add_argument("trail", help="the JSON file from `fedge audit export` (or `fedge task audit`)")
    verify.add_argument("--key", required=True, help="the coordinator's public key (PEM, `fedge audit key`)")
    verify.add_argument("--json", action="store_true", help="print the verdict as JSON")


def export_trail(api: AdminApi, args: argparse.Namespace) -> int:
    """`fedge audit export` and `fedge task audit`: the trail of args.task_id to args.output."""
    trail = api.call("GET", f"/v1/admin/tasks/{args.task_id}/audit")
    Path(args.output).write_text(json.dumps(trail, indent=1, sort_keys=True))
    emit(args, {"path": args.output, "entries": len(trail["entries"])},
         f"wrote {len(trail['entries'])} audit entries of task {args.task_id} to {args.output}")
    return 0


def run(args: argparse.Namespace) -> int:
    from protocol import audit
    from protocol.errors import ProtocolError

    if args.action == "verify":
        try:
            trail = json.loads(Path(args.trail).read_text())
            key = audit.load_public(Path(args.key).read_bytes())
        except (OSError, ValueError, ProtocolError) as exc:
            raise AdminError(f"cannot read the trail or the key: {exc}") from None
        if not isinstance(trail, dict):
            raise AdminError(f"{args.trail}: not an audit trail (expected {{\"entries\": [...], \"head\": {{...}}}})")
        verdict = audit.verify_trail(trail, key)
        who = f"task {verdict.task_id}" if verdict.task_id else "unknown task"
        emit(args, {"ok": verdict.ok, "task_id": verdict.task_id, "entries": verdict.entries,
                    "as_of": verdict.as_of, "failure": verdict.failure},
             f"{args.trail}: {who}, all {verdict.entries} entries as of {_when(verdict.as_of)}: chain, signatures "
             "and signed head verified" if verdict.ok else f"{args.trail}: {who}: FAILED: {verdict.failure}")
        return 0 if verdict.ok else 1
    api = AdminApi.from_args(args)
    if args.action == "key":
        pem = api.raw("GET", "/v1/audit/key")
        Path(args.output).write_bytes(pem)
        emit(args, {"path": args.output}, f"wrote the audit key to {args.output}")
        return 0
    return export_trail(api, args)


def _when(timestamp: float | None) -> str:
    import datetime

    if timestamp is None:
        return "an unknown time"
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
