"""Manage tasks on a coordinator, as a thin client of its admin API (no TensorFlow):

    fedge task create --population P --model m.tflite --config task.toml [--task-id ID]
    fedge task list | show ID | pause ID | resume ID | cancel ID
    fedge task model ID -o global.tflite     (the current global model)
    fedge task watch ID                      (a line per round, a progress bar for the open one)

The task config is a TOML file whose keys are the task settings of docs/coordinator.md,
checked here with the coordinator's own rules before anything is sent: a bad key or value
is one line naming the file, the line and the key. Exit codes: 0 done, 1 an error (one
line on stderr), 2 a usage error.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import re
import time
import tomllib
from pathlib import Path

from fedge.release_cli import configure_task_release, create as create_release
from fedge.admin_http import AdminApi, AdminError, add_connection_args, emit, table

FINISHED = ("completed", "cancelled", "failed")


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="upload a model and start a task on a population")
    create.add_argument("--population", required=True)
    create.add_argument("--model", required=True, help="the .tflite from `fedge export`")
    create.add_argument("--config", required=True, help="the task settings, as TOML")
    create.add_argument("--task-id", default=None, help="default: a generated one")
    add_connection_args(create)
    add_connection_args(sub.add_parser("list", help="list tasks"))
    for action, text in (("show", "a task and its rounds"), ("pause", "stop opening rounds"),
                         ("resume", "open rounds again"), ("cancel", "end the task; its open round fails")):
        p = sub.add_parser(action, help=text)
        p.add_argument("task_id")
        add_connection_args(p)
    model = sub.add_parser("model", help="download the task's .tflite with the current global weights")
    model.add_argument("task_id")
    model.add_argument("-o", "--output", required=True, help="where to write the .tflite with the current weights")
    add_connection_args(model)
    evaluate = sub.add_parser("evaluate", help="evaluate a checkpoint of the task on the population's devices "
                                                "(federated evaluation: accuracy and its spread over devices)")
    evaluate.add_argument("task_id")
    evaluate.add_argument("--round", type=int, default=None, help="the round whose checkpoint (default: the latest "
                                                                   "committed; 0: the initial weights)")
    evaluate.add_argument("--goal-count", type=int, default=None, help="devices to hear from (default: the task's "
                                                                        "eval_goal_count or goal_count)")
    evaluate.add_argument("--eligibility", default=None, help="who may evaluate (default: the task's)")
    evaluate.add_argument("--personalize-steps", type=int, default=None,
                          help="also report accuracy after this many local fine-tuning steps per device")
    evaluate.add_argument("--wait", action="store_true", help="wait for the result and print it")
    evaluate.add_argument("--interval", type=float, default=1.0)
    add_connection_args(evaluate)
    audit = sub.add_parser("audit", help="write the task's signed audit trail to a file (fedge audit verify checks it)")
    audit.add_argument("task_id")
    audit.add_argument("-o", "--output", required=True, help="where to write the trail (JSON)")
    add_connection_args(audit)
    configure_task_release(sub.add_parser("release", help="release a committed round's checkpoint to the "
                                                          "population's devices for inference (fedge release ...)"))
    watch = sub.add_parser("watch", help="follow a task until it finishes")
    watch.add_argument("task_id")
    watch.add_argument("--interval", type=float, default=1.0, help="seconds between polls (default 1)")
    add_connection_args(watch)


def load_task_config(path: str) -> dict:
    """The TOML task config, checked with the coordinator's rules; errors name file:line and key."""
    from coordinator.errors import ApiError
    from coordinator.tasks.config import TaskConfig

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise AdminError(f"cannot read the task config: {exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AdminError(f"{path}: not valid TOML: {exc}") from None
    try:
        TaskConfig.from_dict(raw)
    except ApiError as exc:
        key = _culprit(raw, str(exc))
        line = _line_of(text, key) if key else None
        where = f"{path}:{line}" if line else path
        raise AdminError(f"{where}: {exc}" + (f" (key '{key}')" if key and f"'{key}'" not in str(exc) else "")) \
            from None
    return raw


def _culprit(raw: dict, message: str) -> str | None:
    """The key an error is about: named in the message, or the first that fails on its own."""
    from coordinator.errors import ApiError
    from coordinator.tasks.config import TaskConfig

    unknown = re.search(r"unknown task config field\(s\): ([\w, ]+)", message)
    if unknown:
        return unknown.group(1).split(",")[0].strip()
    for key in raw:
        if f"'{key}'" in message:
            return key
    for key in raw:
        try:
            TaskConfig.from_dict({key: raw[key]})
        except ApiError:
            return key
    return None


def _line_of(text: str, key: str) -> int | None:
    pattern = re.compile(rf"^\s*(\[\s*{re.escape(key)}\s*\]|{re.escape(key)}\s*=)")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return number
    return None


def run(args: argparse.Namespace) -> int:
    if args.action == "create":
        config = load_task_config(args.config)  # before any request
        api = AdminApi.from_args(args)
        model = Path(args.model).read_bytes()
        sha = api.call("POST", "/v1/admin/models", data=model)["model_sha256"]
        body = {"model_sha256": sha, "config": config, **({"task_id": args.task_id} if args.task_id else {})}
        task = api.call("POST", f"/v1/admin/populations/{args.population}/tasks", body)
        c = task["config"]
        emit(args, task, f"task {task['task_id']} created on population {task['population']}: model "
                         f"{task['model_name']} ({task['num_parameters']:,} parameters), "
                         + (f"asynchronous, {c['rounds']} versions of {c['buffer_size'] or c['goal_count']} updates"
                            if c.get("mode") == "async" else f"{c['rounds']} rounds of {c['goal_count']} reports")
                         + f", aggregator {c['aggregator']}; {privacy_summary(c)}")
        return 0
    api = AdminApi.from_args(args)
    if args.action == "list":
        tasks = api.call("GET", "/v1/admin/tasks")["tasks"]
        rows = [{**t, "progress": f"{t['rounds_committed']}/{t['config']['rounds']}",
                 "goal": t["config"]["goal_count"]} for t in tasks]
        emit(args, tasks, table(rows, [("task_id", "TASK"), ("population", "POPULATION"), ("state", "STATE"),
                                       ("progress", "ROUNDS"), ("goal", "GOAL"), ("model_name", "MODEL"),
                                       ("reason", "REASON")]) if tasks else "no tasks")
        return 0
    if args.action in ("pause", "resume", "cancel"):
        task = api.call("POST", f"/v1/admin/tasks/{args.task_id}/{args.action}")
        emit(args, task, f"task {task['task_id']}: {task['state']}")
        return 0
    if args.action == "model":
        data = api.raw("GET", f"/v1/admin/tasks/{args.task_id}/model")
        Path(args.output).write_bytes(data)
        emit(args, {"path": args.output, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()},
             f"wrote {args.output} ({len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}...)")
        return 0
    if args.action == "evaluate":
        return _evaluate(api, args)
    if args.action == "release":
        return create_release(api, args)
    if args.action == "audit":
        from fedge.audit_cli import export_trail

        return export_trail(api, args)
    if args.action == "show":
        task = api.call("GET", f"/v1/admin/tasks/{args.task_id}")
        emit(args, task, _show(task))
        return 0
    return _watch(api, args)


def privacy_summary(c: dict, spent: dict | None = None) -> str:
    """Every privacy mode of a task's config, with the epsilon spent so far where rounds report it."""
    spent = spent or {}
    parts = [f"secagg {c['secagg']}" if c.get("secagg", "off") != "off" else "no secure aggregation"]
    if c.get("dp_noise_multiplier"):
        mode = c.get("dp_mode", "central")
        what = (f"user-level DP {mode} (noise multiplier {c['dp_noise_multiplier']:.4g}, clip "
                f"{c.get('clip_norm', 0):g}{' adaptive' if c.get('dp_target_quantile') else ''}, delta {c['dp_delta']:g}"
                + (f", calibrated to epsilon {c['dp_target_epsilon']:g} over {c['rounds']} rounds"
                   if c.get("dp_target_epsilon") else "")
                + (f", honest fraction {c['dp_honest_fraction']:g}" if mode == "distributed"
                   and c.get("dp_honest_fraction", 1.0) < 1.0 else "") + ")")
        if "epsilon" in spent:
            what += f": epsilon {spent['epsilon']:.3g} spent"
        parts.append(what)
    else:
        parts.append("user-level DP off")
    if c.get("dp_sgd_noise_multiplier"):
        what = (f"example-level DP-SGD on the devices (noise multiplier {c['dp_sgd_noise_multiplier']:g}, clip "
                f"{c['dp_sgd_clip']:g}, delta {c['dp_sgd_delta']:g})")
        if "dp_sgd_device_epsilon" in spent:
            what += f": a device's data has spent up to epsilon {spent['dp_sgd_device_epsilon']:.3g}"
        elif "dp_sgd_round_epsilon" in spent:
            what += f": up to epsilon {spent['dp_sgd_round_epsilon']:.3g} a round"
        parts.append(what)
    return ", ".join(parts)


def _spent(rounds: list[dict]) -> dict:
    """The latest committed round's privacy figures (epsilon is cumulative; DP-SGD's per device)."""
    for r in reversed(rounds):
        m = r.get("metrics") or {}
        found = {k: m[k] for k in ("epsilon", "dp_sgd_device_epsilon", "dp_sgd_round_epsilon") if m.get(k) is not None}
        if r.get("state") == "committed" and found:
            return found
    return {}


def _round_row(r: dict) -> dict:
    m = r["metrics"]
    return {"round": r["round"], "state": r["state"], "selected": r["selected"], "reported": r["reported"],
            "duration": round(r["closed_at"] - r["opened_at"], 1) if r["closed_at"] else None,
            "accuracy": m.get("eval_accuracy"), "loss": m.get("train_loss"),
            "epsilon": m.get("epsilon", m.get("dp_sgd_device_epsilon", m.get("dp_sgd_round_epsilon"))),
            "staleness": m.get("staleness_mean"), "reason": r["reason"] or ""}


ROUND_COLUMNS = [("round", "ROUND"), ("state", "STATE"), ("selected", "SELECTED"), ("reported", "REPORTED"),
                 ("duration", "SECONDS"), ("accuracy", "DEVICE ACC"), ("loss", "TRAIN LOSS"), ("epsilon", "EPSILON"),
                 ("reason", "REASON")]


ASYNC_COLUMNS = [c for c in ROUND_COLUMNS if c[0] not in ("selected", "epsilon")]
ASYNC_COLUMNS.insert(-1, ("staleness", "STALENESS"))


def _evaluation_line(metrics: dict | None) -> str:
    if not metrics:
        return "no result yet"
    return (f"accuracy {metrics['eval_accuracy']:.4f} (loss {metrics['eval_loss']:.4f}) over "
            f"{metrics['eval_devices']} devices, {metrics['eval_examples']:,} examples; per device p10 "
            f"{metrics['eval_accuracy_p10']:.3f}, p50 {metrics['eval_accuracy_p50']:.3f}, "
            f"p90 {metrics['eval_accuracy_p90']:.3f}"
            + (f"; after local fine-tuning {metrics['personalized_accuracy']:.4f} (lift per device p10 "
               f"{metrics['personalization_lift_p10']:+.3f}, p50 {metrics['personalization_lift_p50']:+.3f}, p90 "
               f"{metrics['personalization_lift_p90']:+.3f})" if "personalized_accuracy" in metrics else ""))


def _evaluate(api: AdminApi, args: argparse.Namespace) -> int:
    body = {k: v for k, v in (("round", args.round), ("goal_count", args.goal_count),
                              ("eligibility", args.eligibility), ("personalize_steps", args.personalize_steps))
            if v is not None}
    ev = api.call("POST", f"/v1/admin/tasks/{args.task_id}/evaluate", body)
    c = ev["config"]
    if not args.wait:
        emit(args, ev, f"evaluation task {ev['task_id']}: round {c['evaluate_round']} of {args.task_id} on "
                       f"{c['goal_count']} devices of population {ev['population']}")
        return 0
    while ev["state"] not in FINISHED:
        time.sleep(args.interval)
        ev = api.call("GET", f"/v1/admin/tasks/{ev['task_id']}")
    emit(args, ev, f"evaluation of {args.task_id} round {c['evaluate_round']}: {ev['state']}; "
                   + _evaluation_line(ev.get("evaluation")))
    return 0 if ev["state"] == "completed" else 1


def _show(task: dict) -> str:
    c = task["config"]
    if c.get("kind") == "evaluate":
        return (f"evaluation task {task['task_id']} of {c['evaluate_of']} round {c['evaluate_round']} on population "
                f"{task['population']}: {task['state']}\n" + _evaluation_line(task.get("evaluation")))
    if c.get("mode") == "async":
        return _show_async(task)
    head = [f"task {task['task_id']} on population {task['population']}: {task['state']}"
            + (f" ({task['reason']})" if task["reason"] else ""),
            f"model {task['model_name']} ({task['num_parameters']:,} parameters), {task['rounds_committed']}/"
            f"{c['rounds']} rounds committed, goal {c['goal_count']}, aggregator {c['aggregator']}",
            "privacy: " + privacy_summary(c, _spent(task["rounds"]))]
    rounds = [_round_row(r) for r in task["rounds"]]
    text = "\n".join(head) + ("\n\n" + table(rounds, ROUND_COLUMNS) if rounds else "\nno rounds yet")
    if task.get("evaluations"):
        text += "\n\nfederated evaluation:\n" + "\n".join(
            f"  round {e['round']:>4} ({e['task_id']}, {e['state']}): {_evaluation_line(e['metrics'])}"
            for e in task["evaluations"])
    return text


def _show_async(task: dict) -> str:
    c = task["config"]
    k = c["buffer_size"] or c["goal_count"]
    concurrency = c["concurrency"] or max(k, math.ceil(k * c["over_selection"]))
    head = [f"task {task['task_id']} on population {task['population']}: {task['state']}"
            + (f" ({task['reason']})" if task["reason"] else ""),
            f"model {task['model_name']} ({task['num_parameters']:,} parameters), asynchronous: "
            f"{task['rounds_committed']}/{c['rounds']} versions published, K {k} updates per version, concurrency "
            f"{concurrency}, max staleness {c['max_staleness']}, weight {c['staleness_weight']}, "
            f"aggregator {c['aggregator']}"]
    rounds = [_round_row(r) for r in task["rounds"]]
    return "\n".join(head) + ("\n\n" + table(rounds, ASYNC_COLUMNS) if rounds else "\nno versions yet")


def _watch(api: AdminApi, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    printed: set[int] = set()
    bar = None
    try:
        while True:
            task = api.call("GET", f"/v1/admin/tasks/{args.task_id}")
            for r in task["rounds"]:
                if r["state"] in ("committed", "failed") and r["round"] not in printed:
                    printed.add(r["round"])
                    row = _round_row(r)
                    line = (f"round {row['round']:>4}  {row['state']:<9}  reports {row['reported']:>5}  "
                            f"{row['duration'] or 0:6.1f}s" + (f"  device acc {row['accuracy']:.3f}"
                                                                if row["accuracy"] is not None else "")
                            + (f"  eps {row['epsilon']:.2f}" if row["epsilon"] is not None else "")
                            + (f"  staleness {row['staleness']:.2f}" if row["staleness"] is not None else "")
                            + (f"  {row['reason']}" if row["reason"] else ""))
                    (bar.write if bar else print)(line if not args.json else str(r))
            open_rounds = [r for r in task["rounds"] if r["state"] not in ("committed", "failed")]
            if bar is not None and (not open_rounds or bar.desc != f"round {open_rounds[0]['round']}"):
                bar.close()
                bar = None
            if open_rounds and not args.json:
                r = open_rounds[0]
                if bar is None:
                    goal = task["config"].get("buffer_size") or task["config"]["goal_count"]
                    bar = tqdm(total=goal, desc=f"round {r['round']}", unit="report", leave=False)
                bar.n = r["reported"]
                deadline, what = ((r["selection_deadline"], "selection closes") if r["state"] == "selecting"
                                  else (r["report_deadline"], "reporting deadline"))
                if task["config"].get("mode") == "async":  # a buffer has no deadline: it fills
                    bar.set_postfix_str(f"buffer {r['state']}")
                else:
                    bar.set_postfix_str(f"{r['state']}, {what} in {max(0.0, deadline - time.time()):.0f}s")
            if task["state"] in FINISHED:
                if bar is not None:
                    bar.close()
                print(f"task {task['task_id']}: {task['state']}" + (f" ({task['reason']})" if task["reason"] else ""))
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 130
