"""A small admin client (population, model upload, task creation, round records),
used by the fleet and the demo to set up and observe a task. It retries like a device
(`CoordinatorClient`), so a fleet rides out a coordinator restart."""

from __future__ import annotations

import json

import aiohttp

from device_runtime.client import RETRY_FOR_S, RequestRefused, CoordinatorClient


class AdminClient:
    def __init__(self, base_url: str, token: str, session: aiohttp.ClientSession, retry_for_s: float = RETRY_FOR_S):
        self.http = CoordinatorClient(base_url, session, token=token, retry_for_s=retry_for_s)

    async def _call(self, method: str, path: str, headers: dict | None = None, **kwargs):
        _, _, body = await self.http._request(method, path, headers=self.http._headers(headers), **kwargs)
        return json.loads(body)

    async def ensure_population(self, name: str) -> None:
        try:
            await self._call("POST", "/v1/admin/populations", json={"name": name})
        except RequestRefused as exc:
            if exc.code != "exists":
                raise

    async def upload_model(self, data: bytes) -> str:
        body = await self._call("POST", "/v1/admin/models", data=data,
                                headers={"Content-Type": "application/octet-stream"})
        return body["model_sha256"]

    async def create_task(self, population: str, model_sha: str, config: dict, task_id: str | None = None) -> dict:
        payload = {"model_sha256": model_sha, "config": config}
        if task_id:
            payload["task_id"] = task_id
        return await self._call("POST", f"/v1/admin/populations/{population}/tasks", json=payload)

    async def task(self, task_id: str) -> dict:
        return await self._call("GET", f"/v1/admin/tasks/{task_id}")

    async def cancel_task(self, task_id: str) -> dict:
        return await self._call("POST", f"/v1/admin/tasks/{task_id}/cancel")

    async def peak_rss_bytes(self) -> float | None:
        """The coordinator's peak memory, from its /metrics (None if it does not say)."""
        _, _, body = await self.http._request("GET", "/metrics", headers=self.http._headers())
        for line in body.decode(errors="replace").splitlines():
            if line.startswith("fedge_process_peak_rss_bytes "):
                return float(line.split()[1])
        return None
