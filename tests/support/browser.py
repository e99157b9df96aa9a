"""Render an HTML report in a real headless Chromium and report what a reader would see: console
errors, uncaught exceptions, failed or external resource loads, the plots present (with their rendered
size) and a full-page screenshot.

Talks the Chrome DevTools Protocol over a pipe (`--remote-debugging-pipe`: JSON messages separated by
NUL bytes on file descriptors 3 and 4), so no port is opened and no extra package is needed. Used by
the tests and by benchmarks/make_report_example.py.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mambaprof.errors import MambaprofError

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-pipe")

_PLOTS_JS = """JSON.stringify(Array.from(document.querySelectorAll('figure.plot')).map(f => {
  const svg = f.querySelector('svg'); const r = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  return {name: f.dataset.plot, width: r.width, height: r.height,
          marks: svg ? svg.querySelectorAll('path, rect, line, text, use').length : 0};
}))"""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary: $MAMBAPROF_CHROMIUM, else chromium, chromium-browser, google-chrome."""
    env = os.environ.get("MAMBAPROF_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageReport:
    """What the browser saw: errors of every kind, non-local requests, the plots, and the page title."""

    url: str
    title: str = ""
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    log_errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    plots: list[dict[str, Any]] = field(default_factory=list)
    console_messages: list[str] = field(default_factory=list)
    page_height: float = 0.0

    @property
    def errors(self) -> list[str]:
        """Every console error, uncaught exception and error log entry."""
        return self.console_errors + self.exceptions + self.log_errors


class _Pipe:
    """A DevTools session over the browser's pipe."""

    def __init__(self, proc: subprocess.Popen, write_fd: int, read_fd: int) -> None:
        self.proc, self.write_fd, self.read_fd = proc, write_fd, read_fd
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> int:
        """Write one command; returns its id."""
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.write_fd, json.dumps(msg).encode() + b"\0")
        return self.next_id

    def receive(self, deadline: float) -> dict[str, Any]:
        """The next message (answer or event); TimeoutError after `deadline` (time.monotonic)."""
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from Chromium in time")
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed its DevTools pipe")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        """Send a command and wait for its answer, keeping the events that arrive meanwhile."""
        wanted = self.send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            msg = self.receive(deadline)
            if msg.get("id") == wanted:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, method: str, timeout: float) -> None:
        """Wait until an event called `method` has arrived (or had already)."""
        deadline = time.monotonic() + timeout
        if any(e.get("method") == method for e in self.events):
            return
        while True:
            msg = self.receive(deadline)
            self.events.append(msg)
            if msg.get("method") == method:
                return


def _collect(report: PageReport, events: list[dict[str, Any]], page_url: str) -> None:
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            report.console_messages.append(f"{params.get('type')}: {text}")
            if params.get("type") in ("error", "assert"):
                report.console_errors.append(text)
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            report.exceptions.append(details.get("exception", {}).get("description") or details.get("text", ""))
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error":
                report.log_errors.append(f"{entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            url = params.get("request", {}).get("url", "")
            if url != page_url and not url.startswith("data:"):
                report.external_requests.append(url)


def render_page(html_path: Path, screenshot: Path | None = None, width: int = 1280, timeout: float = 60.0,
                chromium: str | None = None) -> PageReport:
    """Open `html_path` in headless Chromium (fresh profile), wait for load, and report what happened;
    with `screenshot`, save a full-page PNG there. Raises MambaprofError when no Chromium is found."""
    binary = chromium or find_chromium()
    if binary is None:
        raise MambaprofError("no Chromium found", "install it (Debian: apt-get install chromium) or set "
                             "MAMBAPROF_CHROMIUM")
    url = Path(html_path).resolve().as_uri()
    report = PageReport(url=url)
    profile = tempfile.mkdtemp(prefix="mambaprof-chromium-")
    to_browser_r, to_browser_w = os.pipe()
    from_browser_r, from_browser_w = os.pipe()

    def wire_fds() -> None:
        """In the child: our pipe ends become fds 3 (commands in) and 4 (answers out)."""
        os.dup2(to_browser_r, 3)
        os.dup2(from_browser_w, 4)

    proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            pass_fds=(3, 4), preexec_fn=wire_fds, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(to_browser_r)
    os.close(from_browser_w)
    pipe = _Pipe(proc, to_browser_w, from_browser_r)
    try:
        target = pipe.call("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
        session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable", "Network.enable"):
            pipe.call(domain, session=session)
        pipe.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": 900, "deviceScaleFactor": 1,
                                                         "mobile": False}, session=session)
        pipe.call("Page.navigate", {"url": url}, session=session)
        pipe.wait_event("Page.loadEventFired", timeout)
        result = pipe.call("Runtime.evaluate", {"expression": _PLOTS_JS, "returnByValue": True}, session=session)
        report.plots = json.loads(result["result"]["value"])
        report.title = pipe.call("Runtime.evaluate", {"expression": "document.title", "returnByValue": True},
                                 session=session)["result"]["value"]
        metrics = pipe.call("Page.getLayoutMetrics", session=session)
        size = metrics.get("cssContentSize") or metrics.get("contentSize")
        report.page_height = float(size["height"])
        if screenshot is not None:
            clip = {"x": 0, "y": 0, "width": float(size["width"]), "height": float(size["height"]), "scale": 1}
            shot = pipe.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                        "clip": clip}, session=session, timeout=timeout)
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
        time.sleep(0.2)  # let late console/log events arrive
        try:
            pipe.call("Runtime.evaluate", {"expression": "1"}, session=session, timeout=5)
        except (TimeoutError, EOFError, RuntimeError):
            pass
        _collect(report, pipe.events, url)
        try:
            pipe.call("Browser.close", timeout=5)
        except (TimeoutError, EOFError, RuntimeError):
            pass
    finally:
        os.close(to_browser_w)
        os.close(from_browser_r)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)
    return report
