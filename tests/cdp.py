"""A small Chrome DevTools Protocol client for the browser tests (test tooling, not library code).

:class:`Browser` starts headless Chromium on a free port (``--remote-debugging-port=0``), reads the port
from ``DevToolsActivePort`` in a temporary profile, attaches to the page over a WebSocket
(websocket-client) and sends commands; events received meanwhile are kept in :attr:`Browser.events`.
:meth:`Browser.close` ends the browser and its child processes (its own process group) and removes the
profile.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary: $HTSR_CHROMIUM, else the first of CANDIDATES on PATH."""
    env = os.environ.get("HTSR_CHROMIUM")
    if env:
        return env if os.path.exists(env) else None
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class CDPError(RuntimeError):
    pass


class Browser:
    """Headless Chromium with one page, driven over CDP."""

    def __init__(self, binary: str, width: int = 1280, height: int = 900, timeout: float = 30.0) -> None:
        import websocket  # websocket-client (the test extra): here, so that find_chromium works without it

        self._websocket = websocket
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self._id = 0
        self._profile = tempfile.mkdtemp(prefix="htsr-chromium-")
        self._ws: Any = None  # a websocket-client WebSocket
        args = [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--remote-debugging-port=0", f"--user-data-dir={self._profile}", f"--window-size={width},{height}",
                "about:blank"]
        # its own process group: close() ends the renderer and GPU helpers with it
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        try:
            self._connect()
        except BaseException:
            self.close()
            raise

    def _connect(self) -> None:
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while True:
            if self.proc.poll() is not None:
                raise CDPError(f"chromium exited with status {self.proc.returncode}")
            text = port_file.read_text() if port_file.exists() else ""
            if "\n" in text:
                break
            if time.monotonic() > deadline:
                raise CDPError("chromium did not write DevToolsActivePort")
            time.sleep(0.05)
        port = int(text.split("\n")[0])
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=self.timeout) as r:
                    targets = json.loads(r.read())
            except OSError:  # not listening yet
                targets = []
            pages = [t for t in targets if t.get("type") == "page" and "webSocketDebuggerUrl" in t]
            if pages:
                break
            if time.monotonic() > deadline:
                raise CDPError("no page target")
            time.sleep(0.05)
        self._ws = self._websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=self.timeout,
                                               suppress_origin=True)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; events that arrive first go to :attr:`events`."""
        assert self._ws is not None
        self._id += 1
        msg_id = self._id
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self._ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise CDPError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method: str, timeout: float | None = None) -> dict[str, Any]:
        """The first event ``method`` not yet consumed (it is removed from :attr:`events`)."""
        assert self._ws is not None
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            for i, ev in enumerate(self.events):
                if ev["method"] == method:
                    return self.events.pop(i)
            if time.monotonic() > deadline:
                raise CDPError(f"timed out waiting for {method}")
            self._ws.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                msg = json.loads(self._ws.recv())
            except self._websocket.WebSocketTimeoutException:
                continue
            finally:
                self._ws.settimeout(self.timeout)
            if "method" in msg:
                self.events.append(msg)

    def navigate(self, url: str) -> None:
        """Load ``url`` and wait for its load event."""
        self.send("Page.enable")
        self.events = [e for e in self.events if e["method"] != "Page.loadEventFired"]
        self.send("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """Evaluate JS in the page (promises awaited) and return its value; a JS exception raises CDPError."""
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise CDPError(f"JS exception: {r['exceptionDetails']}")
        return r["result"].get("value")

    def screenshot(self, clip: dict[str, float] | None = None, full_page: bool = False) -> bytes:
        """A PNG of the viewport, of ``clip`` (page coordinates: x, y, width, height) or of the whole page."""
        params: dict[str, Any] = {"format": "png"}
        if full_page and clip is None:
            m = self.send("Page.getLayoutMetrics")["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": m["width"], "height": m["height"]}
        if clip is not None:
            params.update(clip=dict(clip, scale=1), captureBeyondViewport=True)
        return base64.b64decode(self.send("Page.captureScreenshot", **params)["data"])

    def close(self) -> None:
        """Close the connection, end the browser's process group and remove its profile."""
        if self._ws is not None:
            try:
                self._ws.close()
            except Exception:
                pass
            self._ws = None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # helpers still exiting in the group: give them a moment, then SIGKILL the group
        try:
            os.killpg(self.proc.pid, 0)
            time.sleep(0.2)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        shutil.rmtree(self._profile, ignore_errors=True)
