"""The status page at `/`: tasks, their rounds, and an inline SVG plot per task of the
devices' reported local accuracy and training loss per committed round."""

from __future__ import annotations

from html import escape


def _polyline(values: list[float], width: int, height: int, lo: float, hi: float) -> str:
    if not values:
        return ""
    span = (hi - lo) or 1.0
    step = width / max(len(values) - 1, 1)
    pts = " ".join(f"{i * step:.1f},{height - (v - lo) / span * height:.1f}" for i, v in enumerate(values))
    return pts


def plot_svg(rounds: list[dict], width: int = 420, height: int = 140) -> str:
    committed = [r for r in rounds if r["state"] == "committed"]
    acc = [r["metrics"].get("eval_accuracy", 0.0) for r in committed]
    loss = [r["metrics"].get("train_loss", 0.0) for r in committed]
    if not committed:
        return "<p><em>no committed rounds yet</em></p>"
    max_loss = max(loss) or 1.0
    return (
        f'<svg width="{width + 60}" height="{height + 30}" viewBox="-40 -10 {width + 60} {height + 30}" '
        'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="accuracy and loss per round">'
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fafafa" stroke="#ccc"/>'
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{_polyline(acc, width, height, 0.0, 1.0)}"/>'
        f'<polyline fill="none" stroke="#d62728" stroke-width="2" stroke-dasharray="4 2" '
        f'points="{_polyline(loss, width, height, 0.0, max_loss)}"/>'
        f'<text x="-35" y="8" font-size="10">1.0</text><text x="-35" y="{height}" font-size="10">0</text>'
        f'<text x="0" y="{height + 14}" font-size="10">round 1</text>'
        f'<text x="{width - 50}" y="{height + 14}" font-size="10">round {len(committed)}</text>'
        f'<text x="{width - 170}" y="12" font-size="10" fill="#1f77b4">— device eval accuracy</text>'
        f'<text x="{width - 170}" y="24" font-size="10" fill="#d62728">- - train loss (max {max_loss:.2f})</text>'
        "</svg>"
    )


def _fmt(value) -> str:
    return "" if value is None else f"{value:.3f}"


def render_status_page(tasks: list[tuple[dict, list[dict]]]) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>fedge coordinator</title>",
             "<meta http-equiv='refresh' content='5'>",
             "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:right}"
             "table{border-collapse:collapse}tr:nth-child(even){background:#f3f3f3}</style></head><body>",
             "<h1>fedge coordinator</h1>"]
    if not tasks:
        parts.append("<p>No tasks yet. Create one with the admin API (see /v1/openapi.json).</p>")
    for summary, rounds in tasks:
        parts.append(f"<h2>{escape(summary['task_id'])} <small>({escape(summary['model_name'])}, "
                     f"population {escape(summary['population'])}) — {escape(summary['state'])}</small></h2>")
        if summary.get("reason"):
            parts.append(f"<p>{escape(summary['reason'])}</p>")
        parts.append(plot_svg(rounds))
        parts.append("<table><tr><th>round</th><th>state</th><th>selected</th><th>reported</th>"
                     "<th>examples</th><th>train loss</th><th>eval acc</th><th>&epsilon; spent</th><th>clip</th>"
                     "<th>reason</th></tr>")
        for r in rounds[-30:]:
            m = r["metrics"]
            parts.append(
                f"<tr><td>{r['round']}</td><td>{escape(r['state'])}</td><td>{r['selected']}</td>"
                f"<td>{r['reported']}</td><td>{r['examples']}</td>"
                f"<td>{m.get('train_loss', float('nan')):.4f}</td><td>{m.get('eval_accuracy', float('nan')):.3f}</td>"
                f"<td>{_fmt(m.get('epsilon'))}</td><td>{_fmt(m.get('dp_clip'))}</td>"
                f"<td style='text-align:left'>{escape(r['reason'])}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)
