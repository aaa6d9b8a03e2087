"""A small admin client (population, model upload, task creation, round records),
used by the fleet and the demo to set up and observe a task."""

from __future__ import annotations

import aiohttp

from device_runtime.client import ApiError


class AdminClient:
    def __init__(self, base_url: str, token: str, session: aiohttp.ClientSession):
        self.base = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.session = session

    async def _call(self, method: str, path: str, headers: dict | None = None, **kwargs):
        async with self.session.request(method, self.base + path, headers={**self.headers, **(headers or {})},
                                        **kwargs) as resp:
            body = await resp.json(content_type=None)
            if resp.status >= 400:
                err = body.get("error", {}) if isinstance(body, dict) else {}
                raise ApiError(resp.status, err.get("code", ""), err.get("message", str(body)))
            return body

    async def ensure_population(self, name: str) -> None:
        try:
            await self._call("POST", "/v1/admin/populations", json={"name": name})
        except ApiError as exc:
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
