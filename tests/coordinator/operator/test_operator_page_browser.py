"""The operator page in a real headless browser (Debian's chromium, driven by Playwright):
loaded against a live `fedge serve` while a fleet trains, its round counter advances
without a page reload, it shows the population and the plots, and it logs no console
error. A screenshot is saved in the test's temp dir.

Without chromium the test is skipped, unless FEDGE_REQUIRE_BROWSER=1 (set by .ci/run,
which installs it) makes that a failure.
"""

import asyncio
import json
import urllib.request
import shutil
import time

import pytest

from device_runtime.fleet.datasets import load_federated
from device_runtime.fleet.emulator import Fleet, FleetConfig
from fedge.local_coordinator import LocalCoordinator
from tests.missing_tool import skip_or_fail

pytestmark = pytest.mark.slow
TOKEN = "operator-admin"


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        skip_or_fail("chromium not installed (apt-get install chromium)", "FEDGE_REQUIRE_BROWSER")
    return path


async def _wait_for(page, script: str, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await page.evaluate(script)
        if value:
            return value
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")



async def _open_page(p, chromium: str, url: str, errors: list[str]):
    """Headless Chromium on the operator page; console errors and page errors land in ``errors``."""
    browser = await p.chromium.launch(executable_path=chromium, headless=True)
    page = await browser.new_page(viewport={"width": 1300, "height": 1100})
    page.on("console", lambda msg: errors.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    await page.goto(url)
    return browser, page

async def test_operator_page_follows_a_fleet_live(digits_tflite, tmp_path):
    chromium = _chromium()
    from playwright.async_api import async_playwright

    loop = asyncio.get_running_loop()
    server = LocalCoordinator(str(tmp_path / "c.db"), TOKEN, ("--min-retry-s", "0.05", "--max-retry-s", "1",
                                                              "--ineligible-retry-s", "0.5", "--checkin-rate", "1000"))
    await loop.run_in_executor(None, server.start)
    errors: list[str] = []
    run = None
    try:
        data = load_federated("digits", 20, "dirichlet:0.5", seed=5)
        cfg = FleetConfig(coordinator=server.url, admin_token=TOKEN, devices=20, partition="dirichlet:0.5",
                          dropout=0.0, slow_fraction=0.0, seed=5, workers=2, progress=False, population="pop",
                          out_dir=str(tmp_path / "out"))
        fleet = Fleet(cfg, data)
        # A goal (25) above the fleet's 20 devices: each round waits out its selection window
        # and its reporting deadline and commits the reports it has (>= 10), every ~2 s: slow
        # enough to watch (at its goal a round of this model commits in ~50 ms).
        task = {"rounds": 30, "goal_count": 25, "over_selection": 1.0, "min_reports": 10,
                "selection_window_s": 1.0, "report_deadline_s": 1.0, "eligibility": "charging", "epochs": 1, "learning_rate": 0.05,
                "codec": "q8"}
        async with async_playwright() as p:
            browser, page = await _open_page(p, chromium, server.url + "/", errors)
            await page.evaluate("window.__loadedOnce = true")  # gone if the page reloads
            # The page is open before the fleet starts: everything after this arrives by polling.
            run = asyncio.create_task(fleet.run(digits_tflite, task, task_id="live"))
            counter = 'document.querySelector(\'section[data-task="live"] .rounds-committed\')'
            first = int(await _wait_for(page, f"{counter} && {counter}.textContent", 120, "the task on the page"))
            try:
                later = await _wait_for(page, f"{counter} && Number({counter}.textContent) >= {first + 2} && "
                                              f"{counter}.textContent", 180, "the round counter to advance by 2")
            except AssertionError as exc:  # say what the page showed
                await page.screenshot(path=str(tmp_path / "stuck.png"), full_page=True)
                raise AssertionError(f"{exc}; the page said: {(await page.evaluate('document.body.innerText'))[:2000]}"
                                     f"; console: {errors}") from None
            assert int(later) >= first + 2
            assert await page.evaluate("window.__loadedOnce === true"), "the page reloaded instead of updating"
            row = await page.evaluate("""() => [...document.querySelectorAll('#populations tr[data-population="pop"] td')]
                                          .map(td => td.textContent)""")
            assert row[0] == "pop" and row[1] == "20", row  # registered devices
            disk = await page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#disk td')]
                                           .map(td => [td.dataset.disk, td.textContent]))""")
            assert disk["blobs"].endswith(("kB", "MB")) and disk["database"].endswith(("kB", "MB")), disk
            objects = await page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#objects td')]
                                              .map(td => [td.dataset.objects, td.textContent]))""")
            # (counted at most twice a minute: a number, maybe from before the first task; the
            # figures themselves are checked in tests/coordinator/rounds/test_retention.py)
            assert objects["location"].endswith(".data") and int(objects["objects"]) >= 0, objects
            assert objects["bytes"].endswith(("kB", "MB")), objects
            # A release of a committed round shows in the releases table at the next poll.
            admin = {"Authorization": f"Bearer {TOKEN}"}
            info = urllib.request.Request(f"{server.url}/v1/admin/tasks/live", headers=admin)
            rounds = json.loads(await loop.run_in_executor(None, lambda: urllib.request.urlopen(info).read()))["rounds"]
            committed = max(r["round"] for r in rounds if r["state"] == "committed")
            req = urllib.request.Request(f"{server.url}/v1/admin/tasks/live/releases", method="POST",
                                         data=json.dumps({"round": committed, "percent": 10, "note": "canary"}).encode(),
                                         headers={"Authorization": f"Bearer {TOKEN}",
                                                  "Content-Type": "application/json"})
            release = json.loads(await loop.run_in_executor(None, lambda: urllib.request.urlopen(req).read()))
            row = f"document.querySelector('#releases tr[data-release=\"{release['release_id']}\"]')"
            cells = await _wait_for(page, f"{row} && [...{row}.querySelectorAll('td')].map(td => td.textContent)",
                                    30, "the release in the releases table")
            assert cells[1:5] == ["pop / stable", "1", "active", "10 %"] and cells[6] == "canary", cells
            plots = await page.evaluate("document.querySelectorAll('section[data-task=\"live\"] .uplot canvas').length")
            assert plots >= 4, plots  # accuracy/loss, reports, MB, duration
            shot = tmp_path / "operator-page.png"
            await page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000
            await browser.close()
    finally:
        if run is not None:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
        server.stop()
    assert not errors, errors


async def test_operator_page_shows_an_async_task_and_its_evaluations(digits_tflite, tmp_path):
    """An asynchronous task with federated evaluation: the page shows devices training against
    the concurrency target, versions per minute and the staleness histogram, then the
    evaluation of the last version, without a console error."""
    chromium = _chromium()
    from playwright.async_api import async_playwright

    loop = asyncio.get_running_loop()
    server = LocalCoordinator(str(tmp_path / "c.db"), TOKEN, ("--min-retry-s", "0.05", "--max-retry-s", "1",
                                                              "--checkin-rate", "1000"))
    await loop.run_in_executor(None, server.start)
    errors: list[str] = []
    run = None
    try:
        data = load_federated("digits", 20, "dirichlet:0.5", seed=6)
        cfg = FleetConfig(coordinator=server.url, admin_token=TOKEN, devices=20, dropout=0.0, slow_fraction=0.0,
                          seed=6, workers=2, progress=False, population="apop", speed="lognormal:0.5",
                          train_time_s=0.3, out_dir=str(tmp_path / "out"))
        task = {"mode": "async", "rounds": 12, "buffer_size": 4, "concurrency": 8, "report_deadline_s": 10.0,
                "eligibility": "", "epochs": 1, "learning_rate": 0.05, "codec": "q8", "eval_every": 12,
                "eval_goal_count": 5}
        async with async_playwright() as p:
            browser, page = await _open_page(p, chromium, server.url + "/", errors)
            run = asyncio.create_task(Fleet(cfg, data).run(digits_tflite, task, task_id="async"))
            section = 'document.querySelector(\'section[data-task="async"]\')'
            live = await _wait_for(page, f"{section} && {section}.querySelector('[data-async=\"live\"]') && "
                                         f"{section}.querySelector('[data-async=\"live\"]').textContent", 120,
                                   "the async task's concurrency on the page")
            assert live.startswith("training ") and live.endswith(" / 8"), live
            stale = await _wait_for(page, f"(() => {{ const s = {section}.querySelector('[data-async=\"staleness\"]');"
                                          " return s && /\\d: \\d/.test(s.textContent) && s.textContent; })()", 120,
                                    "a staleness histogram")
            assert "staleness (versions: updates)" in stale
            evaluation = await _wait_for(page, f"(() => {{ const e = {section}.querySelector('[data-evaluation]');"
                                               " return e && e.textContent; })()", 180, "the evaluation")
            assert evaluation.startswith("evaluation of round 12 on 5 devices")
            await browser.close()
    finally:
        if run is not None:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
        server.stop()
    assert not errors, errors
