"""The device's HTTP client for the /v1 protocol, with retries (tenacity: exponential
backoff with jitter) on network errors, 429 and 5xx for a bounded time (``retry_for_s``),
so a device rides out a coordinator restart. A retried upload sends the same bytes, which
the coordinator recognises as the same update (idempotent)."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential_jitter

from protocol.messages import Assignment, CheckinResponse, DeviceState, UploadMeta
from protocol.secagg.messages import SecAggView


class RequestRefused(Exception):
    """A 4xx answer: the request was wrong or too late; retrying will not help."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code = status, code


class TransientError(Exception):
    """A 429/5xx answer: worth retrying."""


log = logging.getLogger("fedge.device")


def _s3_error(body: bytes) -> str:
    """An S3 error document's code and message (``<Code>AccessDenied</Code>...``), shortly."""
    import re

    text = body[:2000].decode(errors="replace")
    found = {tag: m.group(1) for tag in ("Code", "Message") if (m := re.search(f"<{tag}>([^<]*)</{tag}>", text))}
    return " ".join(found.values()) or text[:200] or "no details"
RETRY_FOR_S = 120.0  # long enough for a coordinator restart; a device's loop then tries again later
# A failed request's wait: BACKOFF_INITIAL_S doubling per attempt, plus up to BACKOFF_JITTER_S, at
# most BACKOFF_MAX_S (tenacity's wait_exponential_jitter; the Java core's Backoff.defaults).
BACKOFF_INITIAL_S, BACKOFF_MAX_S, BACKOFF_JITTER_S = 0.2, 10.0, 1.0


def retryable(exc: BaseException) -> bool:
    """The coordinator is unreachable or overloaded: worth retrying, unlike a 4xx."""
    return isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ServerTimeoutError, TransientError, TimeoutError))


class _WaitReporter:
    """One line every few seconds per coordinator while requests are being retried, however
    many devices of a fleet are waiting: a user sees what the process waits for."""

    def __init__(self, every_s: float = 5.0):
        self.every_s = every_s
        self.last: dict[str, float] = {}

    def __call__(self, base: str, retry_for_s: float, retry_state) -> None:
        now = time.monotonic()
        if now - self.last.get(base, -1e9) < self.every_s:
            return
        self.last[base] = now
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        log.warning("waiting for the coordinator at %s (%s); retrying each request for up to %.0f s",
                    base, exc or "no answer", retry_for_s)


report_wait = _WaitReporter()


def coordinator_urls(spec: str | list[str]) -> list[str]:
    """``URL`` or ``URL1,URL2,...`` (coordinator replicas) as a list of base URLs."""
    urls = [u.strip().rstrip("/") for u in (spec.split(",") if isinstance(spec, str) else spec) if u.strip()]
    if not urls:
        raise ValueError("no coordinator URL given")
    return urls


class CoordinatorClient:
    """A device's HTTP client. With several coordinator URLs (replicas) it uses the first and
    moves to the next whenever one does not answer or answers 5xx, as a load balancer does
    for real devices; a token, an assignment or an upload URL is valid on any replica."""

    def __init__(self, base_url: str | list[str], session: aiohttp.ClientSession, token: str | None = None,
                 attempts: int | None = None, max_backoff_s: float = BACKOFF_MAX_S, retry_for_s: float = RETRY_FOR_S):
        self.bases = coordinator_urls(base_url)
        self._current = 0
        self.session = session
        self.token = token
        self.attempts = attempts  # None: as many as fit in retry_for_s
        self.max_backoff_s = max_backoff_s
        self.retry_for_s = retry_for_s
        self.bytes_up = 0
        self.bytes_down = 0
        self.release_key = ""

    @property
    def base(self) -> str:
        return self.bases[self._current]

    def _fail_over(self) -> None:
        self._current = (self._current + 1) % len(self.bases)

    def _headers(self, extra: dict | None = None) -> dict:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        headers.update(extra or {})
        return headers

    async def _request(self, method: str, path: str, **kwargs):
        status, headers, body, _ = await self._exchange(method, path, **kwargs)
        return status, headers, body

    def _retrying(self, **options) -> AsyncRetrying:
        """This client's retry policy: network errors, 429 and 5xx, for ``retry_for_s`` (and at
        most ``attempts``), with exponential backoff and jitter."""
        stop = stop_after_delay(self.retry_for_s)
        if self.attempts is not None:
            stop = stop | stop_after_attempt(self.attempts)
        wait = wait_exponential_jitter(BACKOFF_INITIAL_S, self.max_backoff_s, jitter=BACKOFF_JITTER_S)
        return AsyncRetrying(stop=stop, wait=wait,
                             retry=retry_if_exception(retryable), reraise=True, **options)

    async def _exchange(self, method: str, path: str, **kwargs):
        """`_request`, with the bytes the answer took on the wire."""
        async for attempt in self._retrying(before_sleep=lambda state: report_wait(self.base, self.retry_for_s,
                                                                                    state)):
            with attempt:
                status, headers, body, wire = await self._send(method, path, **kwargs)
                if status >= 400:
                    try:
                        err = json.loads(body)["error"]
                    except (ValueError, KeyError, TypeError):
                        err = {"code": "http_error", "message": body[:200].decode(errors="replace")}
                    raise RequestRefused(status, err.get("code", ""), err.get("message", ""))
                self.bytes_down += wire
                return status, headers, body, wire

    async def _send(self, method: str, path: str, **kwargs):
        """One request to the current coordinator URL; a replica that does not answer or
        answers 5xx makes the next request go to the next URL (429 means busy: it stays).
        Returns the body as sent (aiohttp inflates a gzip-encoded one) and the bytes it took
        on the wire."""
        try:
            async with self.session.request(method, self.base + path, **kwargs) as resp:
                body = await resp.read()
                if resp.status >= 500:
                    self._fail_over()
                if resp.status == 429 or resp.status >= 500:
                    raise TransientError(f"{resp.status} from {path}")
                encoded = resp.headers.get("Content-Encoding") and resp.content_length is not None
                return resp.status, resp.headers, body, resp.content_length if encoded else len(body)
        except (aiohttp.ClientConnectionError, TimeoutError):
            self._fail_over()
            raise

    async def register(self, population: str, label: str = "", enrollment_secret: str = "",
                       attestation: str = "") -> str:
        """A new device's token; `enrollment_secret` / `attestation` for populations that ask for them."""
        payload = {"population": population, "label": label}
        if enrollment_secret:
            payload["enrollment_secret"] = enrollment_secret
        if attestation:
            payload["attestation"] = attestation
        _, _, body = await self._request("POST", "/v1/devices/register", json=payload)
        answer = json.loads(body)
        self.token = answer["token"]
        self.release_key = answer.get("release_key", "")  # pinned: it signs the model releases to install
        return self.token

    async def checkin(self, state: DeviceState, cached: list[str], wait_s: float = 0.0,
                      release: tuple[str, int] | None = None) -> CheckinResponse:
        """``release``: (channel, installed sequence) of a device that takes model releases."""
        payload = {"state": state.to_dict(), "cached_models": cached, "wait_s": wait_s}
        if release is not None:
            payload.update(release_channel=release[0], release_sequence=release[1])
        _, _, body = await self._request("POST", "/v1/checkin", json=payload, headers=self._headers())
        return CheckinResponse.from_dict(json.loads(body))

    async def fetch_blob(self, url: str, sha: str, cache) -> bytes:
        """A content-addressed blob: from the cache without any request (a blob named by its
        SHA-256 never changes), else downloaded once, however many devices sharing the cache
        (an emulated fleet) ask for it at the same moment."""
        cached = cache.get(sha)
        if cached is not None:
            return cached
        pending: dict = cache.pending
        if sha not in pending:
            pending[sha] = asyncio.ensure_future(self._download(url, sha, cache))
            pending[sha].add_done_callback(lambda _: pending.pop(sha, None))
        return await asyncio.shield(pending[sha])

    async def _download(self, url: str, sha: str, cache) -> bytes:
        # With our token: a population that requires enrollment or attestation guards its blobs.
        # aiohttp asks for gzip and inflates it: a task model comes compressed (its graph
        # compresses 2-4x); the hash is the inflated file's.
        if url.startswith(("https://", "http://")):
            body, wire = await self._download_presigned(url)
        else:
            _, _, body, wire = await self._exchange("GET", url, headers=self._headers())
        cache.put(sha, body)  # verifies the hash: a wrong or tampered blob raises BlobMismatch
        if wire != len(body):
            cache.wire[sha] = wire
        return body

    async def _download_presigned(self, url: str) -> tuple[bytes, int]:
        """A blob from the object store by the presigned URL the assignment named: without our
        token (the URL is the capability; the store must not see the coordinator's token),
        retried on network errors and 5xx like any request; 403 (expired or forged) and 404
        (gone) are refusals."""
        async for attempt in self._retrying():
            with attempt:
                async with self.session.get(url) as resp:
                    body = await resp.read()
                    if resp.status == 429 or resp.status >= 500:
                        raise TransientError(f"{resp.status} from the object store")
                    if resp.status >= 400:
                        raise RequestRefused(resp.status, "blob_refused",
                                             f"the object store refused the download: {_s3_error(body)}")
                    encoded = resp.headers.get("Content-Encoding") and resp.content_length is not None
                    wire = resp.content_length if encoded else len(body)
                    self.bytes_down += wire
                    return body, wire

    def _secagg_path(self, a: Assignment) -> str:
        return f"/v1/tasks/{a.task_id}/rounds/{a.round}/secagg"

    async def secagg_view(self, a: Assignment, since: str = "", wait_s: float = 0.0) -> SecAggView:
        headers = self._headers({"Fedge-Upload-Token": a.upload_token})
        _, _, body = await self._request("GET", self._secagg_path(a), headers=headers,
                                         params={"since": since, "wait_s": f"{wait_s:.3f}"})
        return SecAggView.from_dict(json.loads(body))

    async def secagg_post(self, a: Assignment, phase: str, message: dict) -> dict:
        payload = json.dumps(message).encode()
        headers = self._headers({"Fedge-Upload-Token": a.upload_token, "Content-Type": "application/json"})
        _, _, body = await self._request("POST", f"{self._secagg_path(a)}/{phase}", data=payload, headers=headers)
        self.bytes_up += len(payload)
        return json.loads(body)

    async def report_evaluation(self, assignment: Assignment, report: dict) -> dict:
        """An evaluation task's report (protocol.messages.EvaluationReport) to the assignment's URL."""
        payload = json.dumps(report).encode()
        headers = self._headers({"Content-Type": "application/json", "Fedge-Upload-Token": assignment.upload_token})
        _, _, body = await self._request("POST", assignment.upload_url, data=payload, headers=headers)
        self.bytes_up += len(payload)
        return json.loads(body)

    async def upload(self, assignment: Assignment, payload: bytes, meta: UploadMeta) -> dict:
        fields = {"example_count": meta.example_count, "train_loss": meta.train_loss, "eval_loss": meta.eval_loss,
                  "eval_accuracy": meta.eval_accuracy, "eval_count": meta.eval_count}
        if meta.below_clip is not None:
            fields["below_clip"] = meta.below_clip
        if meta.dp_sgd is not None:
            fields["dp_sgd"] = meta.dp_sgd
        if meta.dp_sgd_epsilon is not None:
            fields["dp_sgd_epsilon"] = meta.dp_sgd_epsilon
        headers = self._headers({
            "Content-Type": "application/octet-stream",
            "Fedge-Upload-Token": assignment.upload_token,
            "Fedge-Upload": json.dumps(fields),
        })
        _, _, body = await self._request("POST", assignment.upload_url, data=payload, headers=headers)
        self.bytes_up += len(payload)
        return json.loads(body)
