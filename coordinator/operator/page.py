"""The operator page at `/`: a static page whose script polls `GET /v1/status`
(`coordinator.operator.status`) every two seconds and redraws in place: the populations,
the round in progress, and per-round history plots drawn with uPlot (vendored under
static/uplot/, MIT; no network needed to show the page).
"""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
OPERATOR_PAGE = (STATIC_DIR / "operator.html").read_text(encoding="utf-8")
