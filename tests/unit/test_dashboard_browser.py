"""The dashboard and the report in a real headless browser (Debian's chromium, driven over the
DevTools protocol): the dashboard loads, shows the experiment's conversation, picks up events
emitted while it is open, and logs no console error; videos play in both; the report fits a
1,400 px window. A screenshot goes to $ROBOLAKE_SCREENSHOTS (default: the test's tmp dir).
Chromium missing or failing to start is a test failure with the reason, never a skip."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.unit.test_report import EXPERIMENT, build_experiment, emit, sink

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Plays the first video for a moment: {duration, currentTime, videoWidth} once it moved, or the error.
PLAY = """(async () => {
  const video = document.querySelector("video");
  video.muted = true;
  await video.play();
  const started = performance.now();
  while (video.currentTime === 0 && performance.now() - started < 10000) await new Promise((r) => setTimeout(r, 50));
  return {duration: video.duration, currentTime: video.currentTime, videoWidth: video.videoWidth,
          error: video.error && video.error.message};
})()"""
# Read at import: the unit tests' conftest clears ROBOLAKE_* before each module runs.
SCREENSHOTS = os.environ.get("ROBOLAKE_SCREENSHOTS")


class Browser:
    """One headless chromium and a DevTools session on its first page."""

    def __init__(self, profile: Path):
        from websockets.sync.client import connect

        self._stack = contextlib.ExitStack()
        executable = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
        if executable is None:
            pytest.fail(f"no browser for the dashboard test: none of {BROWSERS} is on PATH "
                        "(`make test` installs Debian's chromium; apt-get install chromium)")
        self.process = subprocess.Popen(
            [executable, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--remote-debugging-port=0", f"--user-data-dir={profile}", "--window-size=1400,1000",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                pytest.fail(f"chromium did not start: {self.process.stderr.read().decode(errors='replace')[-800:]}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            page = next(t for t in json.load(response) if t["type"] == "page")
        self.socket = self._stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024))
        self.ids, self.errors, self.requests = itertools.count(1), [], []
        for domain in ("Runtime", "Log", "Page", "Network"):
            self.send(f"{domain}.enable")

    def send(self, method: str, **params) -> dict:
        call_id = next(self.ids)
        self.socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=30))
            self._note(message)
            if message.get("id") == call_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message.get("result", {})

    def _note(self, message: dict) -> None:
        """Console errors, uncaught exceptions, browser log errors, and every URL the page asked for."""
        method, params = message.get("method"), message.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            self.errors.append(params["exceptionDetails"].get("exception", {}).get("description")
                               or params["exceptionDetails"].get("text"))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(f"{params['entry'].get('url', '')}: {params['entry']['text']}")

    def evaluate(self, expression: str):
        """The expression's value (a promise's, once it settles)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 20.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"the page never satisfied {expression!r} within {timeout_s} s; page text: "
                             f"{self.evaluate('document.body.innerText')[:1500]}")

    def screenshot(self, path: Path) -> bytes:
        png = base64.b64decode(self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        return png

    def close(self) -> None:
        self._stack.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def test_dashboard_shows_the_conversation_live_in_a_real_browser(tmp_path, monkeypatch):
    from infra.settings import Settings
    from robolake.report.dashboard import serve
    from schemas import events, topics

    settings = Settings.load(env={}, bus="memory", lake=f"file://{tmp_path}/lake")
    ids = build_experiment(settings)
    # `robolake run` evaluated the checkpoint in iteration 1: the learned policy's curves have an x
    emit(settings, topics.RUNS, events.RUN_STAGE, [{
        "stage_id": "stage-eval", "experiment_id": EXPERIMENT, "iteration": 0, "stage": "eval", "status": "done",
        "attempt": 1, "detail": json.dumps({"policy": f"pac:{ids['run']}", "version": "step-100"})}])
    sink(settings)
    server = serve(settings, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    browser = Browser(tmp_path / "profile")
    try:
        browser.send("Page.navigate", url=f"http://127.0.0.1:{server.server_address[1]}/?experiment={EXPERIMENT}")
        browser.wait_for("document.querySelectorAll('#timeline li').length === 12")
        assert browser.evaluate("document.querySelector('#timeline li[data-type=\"curriculum.decision\"]')"
                                ".dataset.ids") == ids["decision"]
        browser.wait_for("document.querySelector('#learned table') && "
                         "document.querySelector('#learned').innerText.includes('lift_red')")
        assert "no expert episodes" in browser.evaluate("document.querySelector('#expert').innerText")
        browser.wait_for("document.querySelectorAll('#videos video').length === 2")
        assert browser.evaluate(PLAY)["duration"] == pytest.approx(0.6)  # 6 frames, 0.1 s of simulation apart
        assert browser.evaluate("document.querySelectorAll('#success svg').length") == 2

        # a run goes on while the page is open: new events reach the lake, the timeline follows
        emit(settings, topics.ANALYSIS, events.ANALYSIS_VERDICT_V2, [{
            "verdict_id": "verdict-live", "experiment_id": EXPERIMENT, "skill_id": "reach_red",
            "verdict": "converged", "rationale": "no change in 3 rounds", "run_id": ids["run"],
            "method": "statistical", "converged_at": 30, "slope": 0.0, "slope_low": -0.1, "slope_high": 0.1,
            "call_id": None}])
        emit(settings, topics.LEARNER, events.LEARNER_METRICS, [{
            "experiment_id": EXPERIMENT, "run_id": ids["run"], "step": 40, "name": "loss", "value": 0.02,
            "skill_id": None}])
        sink(settings)
        browser.wait_for("document.querySelectorAll('#timeline li').length === 14")
        assert browser.evaluate("document.querySelector('#timeline li:nth-last-child(2)').dataset.ids") == "verdict-live"
        assert "reach_red is converged" in browser.evaluate("document.querySelector('#timeline').innerText")
        browser.wait_for("document.querySelector('#learned').innerText.includes('converged')")

        png = browser.screenshot(Path(SCREENSHOTS or tmp_path) / "dashboard.png")
        assert png.startswith(b"\x89PNG") and len(png) > 10_000
        assert browser.errors == [], browser.errors
        served = f"http://127.0.0.1:{server.server_address[1]}/"
        assert any(url.startswith(served + "api/timeline?") for url in browser.requests)  # (it listens)
        assert all(url.startswith((served, "data:")) for url in browser.requests), set(browser.requests)
    finally:
        browser.close()
        server.shutdown()
        server.server_close()


def test_the_report_page_renders_offline_fits_1400_px_and_plays_its_videos(tmp_path):
    """Self-contained, as a browser sees it: every request the page makes is for itself or inline data;
    long texts (a model's unbroken reply, a long rationale) wrap or fold instead of widening the page."""
    from infra.settings import Settings
    from robolake.cli import main
    from schemas import events, topics
    from tests.unit.test_report import call

    settings = Settings.load(env={}, bus="memory", lake=f"file://{tmp_path}/lake")
    ids = build_experiment(settings, drain=lambda _: None)
    emit(settings, topics.VLM, events.VLM_CALL, [call("call-long", "propose", "{" + "x" * 5000 + "}")])
    emit(settings, topics.CURRICULUM, events.CURRICULUM_PROPOSAL_V2, [{
        "proposal_id": "proposal-" + "p" * 120, "experiment_id": EXPERIMENT, "proposer": "scripted/rules",
        "task": "stack " * 100, "rationale": "because" * 600, "call_id": "call-long"}])
    sink(settings)
    assert main(["report", "--experiment", EXPERIMENT, "-o", str(tmp_path / "out"), "--lake", settings.lake]) == 0
    page = (tmp_path / "out" / f"{EXPERIMENT}.html").resolve()
    browser = Browser(tmp_path / "profile")
    try:
        browser.send("Page.navigate", url=f"{page.as_uri()}#call-{ids['decompose_call']}")
        browser.wait_for("document.readyState === 'complete'")
        assert browser.evaluate("Array.from(document.images).every((i) => i.complete && i.naturalWidth > 0)")
        assert browser.evaluate("document.querySelectorAll('img').length") >= 1
        assert browser.evaluate("document.querySelector(':target').id") == f"call-{ids['decompose_call']}"
        assert browser.evaluate("document.documentElement.scrollWidth") <= 1400
        assert browser.evaluate("document.querySelectorAll('video').length") == 2
        played = browser.evaluate(PLAY)
        assert played["error"] is None and played["duration"] == pytest.approx(0.6), played
        assert played["currentTime"] > 0 and played["videoWidth"] == 8  # the fixture's 8x8 frames
        browser.evaluate("document.querySelectorAll('details').forEach((d) => { d.open = true; })")
        assert browser.evaluate("document.documentElement.scrollWidth") <= 1400  # unfolded too
        browser.screenshot(Path(SCREENSHOTS or tmp_path) / "report.png")
        assert browser.errors == [], browser.errors
        assert page.as_uri() in browser.requests  # (it listens)
        assert {url.split(":", 1)[0] for url in browser.requests} <= {"file", "data"}, set(browser.requests)
    finally:
        browser.close()
