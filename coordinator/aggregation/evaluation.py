"""Federated evaluation, pure: the devices' reports of one evaluation round -> what the
operator sees. Fairness is a distribution, not a mean: besides the example-weighted
accuracy and loss, the spread of per-device accuracy (p10 / p50 / p90 over devices).

Each report is bounded before it gets here (`protocol.messages.EvaluationReport`: correct <=
examples) and weighs at most `cap` examples: a device that lies moves the weighted accuracy
by at most cap / (total weight), and each quantile by at most one device's rank.
"""

from __future__ import annotations

import numpy as np

QUANTILES = (10, 50, 90)


def summarize(reports: list[tuple[int, float, float]], cap: int) -> dict:
    """``reports``: (examples, correct, loss_sum) per device. A device's counts are scaled
    down to ``cap`` examples (its accuracy and mean loss unchanged, its weight bounded)."""
    if not reports:
        return {"eval_devices": 0, "eval_examples": 0}
    examples = np.array([r[0] for r in reports], np.float64)
    correct = np.array([r[1] for r in reports], np.float64)
    loss = np.array([r[2] for r in reports], np.float64)
    scale = np.minimum(1.0, cap / examples)
    weight = examples * scale
    accuracy = correct / examples  # per device, in [0, 1]
    out = {"eval_devices": len(reports), "eval_examples": int(weight.sum()),
           "eval_accuracy": float((correct * scale).sum() / weight.sum()),
           "eval_loss": float((loss * scale).sum() / weight.sum())}
    for q, value in zip(QUANTILES, np.percentile(accuracy, QUANTILES)):
        out[f"eval_accuracy_p{q}"] = float(value)
    return out


def summarize_personalized(reports: list[tuple[int, float, float, float, float]], cap: int) -> dict:
    """Personalized evaluation: (examples, correct, loss_sum, correct after fine-tuning, loss
    sum after) per device -> the fine-tuned accuracy (weighted, and p10 / p50 / p90 over
    devices) and the lift per device (fine-tuned minus global accuracy, p10 / p50 / p90)."""
    tuned = summarize([(n, c2, l2) for n, _, _, c2, l2 in reports], cap)
    out = {"personalized_devices": tuned["eval_devices"],
           "personalized_accuracy": tuned["eval_accuracy"], "personalized_loss": tuned["eval_loss"]}
    for q in QUANTILES:
        out[f"personalized_accuracy_p{q}"] = tuned[f"eval_accuracy_p{q}"]
    lift = np.array([(c2 - c) / n for n, c, _, c2, _ in reports], np.float64)
    for q, value in zip(QUANTILES, np.percentile(lift, QUANTILES)):
        out[f"personalization_lift_p{q}"] = float(value)
    return out
