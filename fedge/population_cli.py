"""Manage populations on a coordinator: `fedge population create NAME`, `fedge population list`.

A population with --enrollment-secret registers only devices that send the secret (give it
to the app at provisioning); with --require-attestation, only devices the coordinator's
attestation verifier accepts.
"""

from __future__ import annotations

import argparse

from fedge.admin_http import AdminApi, add_connection_args, emit, table


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create a population")
    create.add_argument("name")
    create.add_argument("--enrollment-secret", default="", help="devices must send this secret to register")
    create.add_argument("--require-attestation", action="store_true",
                        help="devices must pass the coordinator's --attestation-verifier")
    add_connection_args(create)
    listing = sub.add_parser("list", help="list populations")
    add_connection_args(listing)


def run(args: argparse.Namespace) -> int:
    api = AdminApi.from_args(args)
    if args.action == "create":
        pop = api.call("POST", "/v1/admin/populations", {"name": args.name, "enrollment_secret":
                                                         args.enrollment_secret,
                                                         "require_attestation": args.require_attestation})
        emit(args, pop, f"population {pop['name']} created"
             + (" (enrollment secret required)" if pop["enrollment_secret"] else "")
             + (" (attestation required)" if pop["require_attestation"] else ""))
        return 0
    pops = api.call("GET", "/v1/admin/populations")["populations"]
    rows = [{**p, "tasks": ",".join(p["tasks"]) or "-", "secret": "yes" if p["enrollment_secret"] else "no",
             "attestation": "yes" if p["require_attestation"] else "no"} for p in pops]
    emit(args, pops, table(rows, [("name", "POPULATION"), ("devices", "DEVICES"), ("seen_last_hour", "SEEN 1H"),
                                  ("secret", "SECRET"), ("attestation", "ATTESTATION"), ("tasks", "TASKS")])
         if pops else "no populations")
    return 0
