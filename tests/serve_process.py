"""A real `fedge serve` subprocess for tests that need a process boundary (kill -9, CLIs)."""

import json
import urllib.error
import urllib.request

from fedge.local_coordinator import LocalCoordinator

TOKEN = "crash-admin"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


class Server(LocalCoordinator):
    def __init__(self, db: str, admin_token: str = TOKEN, data_dir: str = ""):
        super().__init__(db, admin_token, ("--data-dir", data_dir) if data_dir else ())

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



    def setup_task(self, population: str, model: bytes, config: dict, task_id: str = "t") -> str:
        """Creates the population, uploads the model and starts a task on it; returns the model hash."""
        status, _ = self.call("POST", "/v1/admin/populations", {"name": population}, ADMIN)
        assert status == 201, status
        status, info = self.call("POST", "/v1/admin/models",
                                 headers={**ADMIN, "Content-Type": "application/octet-stream"}, raw=model)
        assert status == 201, info
        status, body = self.call("POST", f"/v1/admin/populations/{population}/tasks",
                                 {"model_sha256": info["model_sha256"], "config": config, "task_id": task_id}, ADMIN)
        assert status == 201, body
        return info["model_sha256"]
