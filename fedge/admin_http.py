"""The operator commands' connection to a coordinator's admin API: where it is, the admin
token, one request at a time, and errors as one line (`AdminError`).

Coordinator: --coordinator, else $FEDGE_COORDINATOR, else http://127.0.0.1:8080.
Token: --admin-token, else $FEDGE_ADMIN_TOKEN, else the file `fedge serve` wrote next to
its database (--db, default fedge.db: fedge.db.admin-token).
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_COORDINATOR = "http://127.0.0.1:8080"


class AdminError(Exception):
    """One line for the user; the exit code is 1."""


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--coordinator", default=None,
                        help=f"coordinator URL (default $FEDGE_COORDINATOR or {DEFAULT_COORDINATOR})")
    parser.add_argument("--admin-token", default=None,
                        help="admin token (default $FEDGE_ADMIN_TOKEN or the token file next to --db)")
    parser.add_argument("--db", default="fedge.db", help="a local coordinator's database, to find its token file")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")


class AdminApi:
    def __init__(self, url: str, token: str, timeout_s: float = 30.0):
        self.url, self.token, self.timeout_s = url.rstrip("/"), token, timeout_s

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "AdminApi":
        url = args.coordinator or os.environ.get("FEDGE_COORDINATOR") or DEFAULT_COORDINATOR
        token = args.admin_token or os.environ.get("FEDGE_ADMIN_TOKEN")
        token_file = Path(args.db + ".admin-token")
        if not token and token_file.exists():
            token = token_file.read_text().strip()
        if not token:
            raise AdminError(f"no admin token: give --admin-token, set FEDGE_ADMIN_TOKEN, or run next to the "
                             f"coordinator's database ({token_file} not found)")
        return cls(url, token)

    def call(self, method: str, path: str, body: dict | None = None, data: bytes | None = None) -> dict:
        return json.loads(self.raw(method, path, body, data) or b"null")

    def raw(self, method: str, path: str, body: dict | None = None, data: bytes | None = None) -> bytes:
        headers = {"Authorization": f"Bearer {self.token}"}
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        elif data is not None:
            headers["Content-Type"] = "application/octet-stream"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            try:
                err = json.loads(exc.read())["error"]
                message = f"{err['message']} ({exc.code} {err['code']})"
            except (ValueError, KeyError, TypeError):
                message = f"HTTP {exc.code} {exc.reason}"
            raise AdminError(f"{method} {self.url}{path}: {message}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AdminError(f"cannot reach the coordinator at {self.url}: {reason}") from None


def table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """Rows as aligned text columns: (key, heading) pairs; numbers right-aligned."""
    cells = [[heading for _, heading in columns]]
    for row in rows:
        cells.append([_cell(row.get(key)) for key, _ in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    numeric = [all(_is_number(row.get(key)) for row in rows) and rows for key, _ in columns]
    lines = []
    for r in cells:
        lines.append("  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric)).rstrip())
    return "\n".join(lines)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) or value is None


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def emit(args: argparse.Namespace, data, text: str) -> None:
    print(json.dumps(data, indent=1) if args.json else text)
