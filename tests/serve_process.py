"""A real `fedge serve` subprocess for tests that need a process boundary (kill -9, CLIs)."""

import json
import urllib.error
import urllib.request

from fedge.local_coordinator import LocalCoordinator

TOKEN = "crash-admin"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


class Server(LocalCoordinator):
    def __init__(self, db: str):
        super().__init__(db, TOKEN)

    def call(self, method, path, body=None, headers=None, raw: bytes | None = None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        hdrs = {"Content-Type": "application/json"} if raw is None else {}
        hdrs.update(headers or {})
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


