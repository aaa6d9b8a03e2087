"""Model releases: a committed round delivered to a population's devices for inference,
signed, staged and reversible (`fedge task release` makes one).

    fedge task release digits --round 40 --percent 10 --note "first canary"
    fedge release list [--population phones] [--channel stable]
    fedge release show REL_ID
    fedge release promote REL_ID --percent 100
    fedge release rollback REL_ID
"""

from __future__ import annotations

import argparse

from fedge.admin_http import AdminApi, add_connection_args, emit, table


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="releases, newest first per channel")
    listing.add_argument("--population", default=None)
    listing.add_argument("--channel", default=None)
    add_connection_args(listing)
    for action, text in (("show", "one release"), ("rollback", "roll the channel's newest release back to the model "
                                                               "before it, on every device")):
        p = sub.add_parser(action, help=text)
        p.add_argument("release_id")
        add_connection_args(p)
    promote = sub.add_parser("promote", help="raise a release's percentage of devices (it only grows)")
    promote.add_argument("release_id")
    promote.add_argument("--percent", type=float, required=True)
    add_connection_args(promote)


def configure_task_release(parser: argparse.ArgumentParser) -> None:
    """`fedge task release TASK --round N ...` (registered by fedge.task_cli)."""
    parser.add_argument("task_id")
    parser.add_argument("--round", type=int, required=True, help="the committed round whose checkpoint is released")
    parser.add_argument("--channel", default=None, help="the population's channel (default stable)")
    parser.add_argument("--percent", type=float, default=None,
                        help="share of the population's devices, chosen by a stable hash (default 100)")
    parser.add_argument("--note", default=None)
    parser.add_argument("--require-eval", type=float, default=None, metavar="ACCURACY",
                        help="refuse unless the round's federated evaluation reached this accuracy")
    add_connection_args(parser)


def create(api: AdminApi, args: argparse.Namespace) -> int:
    body = {"round": args.round, **{k: v for k, v in (("channel", args.channel), ("percent", args.percent),
                                                       ("note", args.note), ("require_eval", args.require_eval))
                                    if v is not None}}
    r = api.call("POST", f"/v1/admin/tasks/{args.task_id}/releases", body)
    emit(args, r, f"release {r['release_id']}: round {r['round']} of task {r['task_id']} to {r['percent']:g}% of "
                  f"population {r['population']} (channel {r['channel']}, sequence {r['sequence']}, "
                  f"{r['size']:,} bytes, model {r['model_sha256'][:16]}...)")
    return 0


def _line(r: dict) -> str:
    back = f", rolling back {r['rollback_of']}" if r["rollback_of"] else ""
    return (f"release {r['release_id']}: {r['state']}, {r['percent']:g}% of {r['population']}/{r['channel']}, "
            f"sequence {r['sequence']}, task {r['task_id']} round {r['round']}{back}")


def run(args: argparse.Namespace) -> int:
    api = AdminApi.from_args(args)
    if args.action == "list":
        query = "&".join(f"{k}={v}" for k, v in (("population", args.population), ("channel", args.channel)) if v)
        found = api.call("GET", "/v1/admin/releases" + (f"?{query}" if query else ""))["releases"]
        emit(args, found, table(found, [("release_id", "RELEASE"), ("population", "POPULATION"), ("channel", "CHANNEL"),
                                        ("sequence", "SEQ"), ("state", "STATE"), ("percent", "PERCENT"),
                                        ("task_id", "TASK"), ("round", "ROUND"), ("note", "NOTE")])
             if found else "no releases")
        return 0
    if args.action == "show":
        r = api.call("GET", f"/v1/admin/releases/{args.release_id}")
    elif args.action == "promote":
        r = api.call("POST", f"/v1/admin/releases/{args.release_id}/promote", {"percent": args.percent})
    else:
        r = api.call("POST", f"/v1/admin/releases/{args.release_id}/rollback")
    emit(args, r, _line(r))
    return 0
