"""The Dagster UI as a person sees it: a real home, `dagster-webserver` on 127.0.0.1, and Debian's
headless `chromium` opening the asset pages.

Dagster shows a markdown metadata value of 1,000 characters or more as a ``[Show Markdown]`` link
that opens a dialog, so a page load alone (``chromium --dump-dom``) never renders the preview
tables' thumbnails. The browser is therefore driven over the DevTools protocol (on a pipe, no
extra package): it loads the asset page, clicks ``[Show Markdown]`` on the ``preview`` row, waits
until the dialog's ``data:`` images are decoded (``naturalWidth > 0``: the browser painted them,
the sanitizer did not strip them), then keeps the DOM and a screenshot (in the test's tmp_path).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from asset_pipeline.samples import make_samples

from .conftest import REPO

CHROMIUM_PACKAGE = "chromium"  # Debian's package (and binary) name
BIN = Path(sys.executable).parent
PNG_SRC = 'src="data:image/png;base64,'

# The `[Show Markdown]` link in the metadata row whose key is `preview` (the overview page's
# latest-materialization metadata table), clicked as a person would.
OPEN_PREVIEW_JS = """(() => {
  for (const tr of document.querySelectorAll('tr')) {
    const key = tr.querySelector('td');
    if (!key || key.textContent.trim() !== 'preview') continue;
    const link = [...tr.querySelectorAll('*')].find(
      (e) => e.children.length === 0 && e.textContent.trim() === '[Show Markdown]');
    if (link) { link.click(); return true; }
  }
  return false;
})()"""
# Thumbnails the browser decoded inside the open dialog.
DECODED_THUMBNAILS_JS = """[...document.querySelectorAll('[role=dialog] img, .bp5-dialog img')]
  .filter((i) => i.src.startsWith('data:image/png;base64,') && i.complete && i.naturalWidth > 0).length"""


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(f"chromium is not installed: apt-get install -y --no-install-recommends {CHROMIUM_PACKAGE} "
                    "(Debian's package; the UI tests drive it headless)", pytrace=False)
    return path


class Browser:
    """Headless Chromium on the DevTools protocol over ``--remote-debugging-pipe`` (requests on
    fd 3, replies on fd 4, NUL-terminated JSON): a real browser with no driver package, and no
    port a parallel test could take."""

    def __init__(self, profile: Path, width: int = 1600, height: int = 1000) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_fds() -> None:
            """The child's fd 3 and fd 4, whatever numbers the pipes got here: copied above 10 first,
            so that each dup2 copies between different numbers (which also makes it inheritable)."""
            high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             f"--user-data-dir={profile}", f"--window-size={width},{height}", "--no-first-run",
             "--hide-scrollbars", "about:blank"],
            close_fds=False, preexec_fn=wire_fds,  # Python's own descriptors are not inheritable (PEP 446)
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        try:
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                      deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.close()
            raise

    def call(self, method: str, session: bool = False, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed the DevTools pipe during {method}")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:  # events (no id) are not needed here
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", session=True, url=url)

    def wait_for(self, expression: str, what: str, timeout: float = 60) -> object:
        """Poll `expression` until it is truthy (the UI loads its data with GraphQL after the page)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(f"the page never showed {what} within {timeout:.0f}s")

    def dom(self) -> str:
        return self.evaluate("document.documentElement.outerHTML")

    def text(self) -> str:
        return self.evaluate("document.body.innerText")

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", session=True, format="png")["data"]))
        return path

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (RuntimeError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


def test_a_missing_chromium_names_its_debian_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What a newcomer without the browser sees instead of a skipped test."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match=r"^chromium is not installed: apt-get install -y "
                                                    r"--no-install-recommends chromium \(Debian's package"):
        _chromium()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(env: dict[str, str], *args: str) -> None:
    done = subprocess.run([str(BIN / "asset-pipeline"), *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"asset-pipeline {' '.join(args)}: {done.stderr[-2000:]}"


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a Dagster UI on a home that went through ingest and embeddings (the sample
    inbox, the tiny test model) with the CLI, as a user's would: its runs are in the instance the
    webserver reads."""
    _chromium()  # fail before minutes of set-up
    root = tmp_path_factory.mktemp("ui")
    env = {**os.environ, "ASSET_PIPELINE_HOME": str(root / "home"), "DAGSTER_HOME": str(root / "dagster"),
           "DAGSTER_DISABLE_TELEMETRY": "1"}
    for var in ("ASSET_PIPELINE_INBOX", "ASSET_PIPELINE_STORE", "ASSET_PIPELINE_CRASH_AT"):
        env.pop(var, None)
    _cli(env, "init")
    make_samples(root / "home" / "inbox")
    _cli(env, "ingest")
    _cli(env, "embed", "--model", "tiny-test")
    # The "Join the Dagster community" dialog would cover the page on localhost; this is the file
    # its Skip button writes.
    (root / "dagster" / ".nux").mkdir(parents=True, exist_ok=True)
    (root / "dagster" / ".nux" / "nux.yaml").write_text("seen: 1\n")
    port = _free_port()
    log = (root / "webserver.log").open("w")
    server = subprocess.Popen([str(BIN / "dagster-webserver"), "-m", "asset_pipeline.definitions",
                               "-h", "127.0.0.1", "-p", str(port)], env=env, cwd=REPO, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=5) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, f"dagster-webserver exited: {(root / 'webserver.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, "dagster-webserver did not answer /server_info within 180s"
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    b = Browser(tmp_path / "chromium-profile")
    try:
        yield b
    finally:
        b.close()


def _open_preview(browser: Browser, url: str, shot: Path) -> str:
    """Open an asset page, open its `preview` metadata and return the DOM once the thumbnails are
    painted; a screenshot of the page with the dialog goes to `shot`."""
    browser.open(url)
    browser.wait_for(OPEN_PREVIEW_JS, "a [Show Markdown] link for the `preview` metadata")
    browser.wait_for(DECODED_THUMBNAILS_JS, "a decoded data:image/png thumbnail in the preview dialog")
    time.sleep(0.5)  # let the dialog's opening transition finish before the picture
    browser.screenshot(shot)
    return browser.dom()


def test_ingest_preview_shows_image_thumbnails(ui: str, browser: Browser, tmp_path: Path) -> None:
    dom = _open_preview(browser, f"{ui}/assets/asset_versions", tmp_path / "asset_versions-preview.png")
    assert dom.count(PNG_SRC) >= 5  # the sample inbox has a handful of distinct images
    text = browser.text()
    for shown in ("asset_id", "version", "type", "format", "size_bytes", "source", "audio"):
        assert shown in text  # the preview's columns stay; a non-image row shows its type


def test_near_duplicates_preview_shows_both_images(ui: str, browser: Browser, tmp_path: Path) -> None:
    dom = _open_preview(browser, f"{ui}/assets/near_duplicates", tmp_path / "near_duplicates-preview.png")
    decoded = browser.evaluate(DECODED_THUMBNAILS_JS)
    assert decoded >= 2 and decoded % 2 == 0, decoded  # each pair: both pictures, side by side
    assert dom.count(PNG_SRC) == decoded
    assert "similarity" in browser.text()


def test_asset_versions_page_shows_its_row_count(ui: str, browser: Browser, tmp_path: Path) -> None:
    """The overview's "Row count" comes from the materialization's `dagster/row_count` metadata,
    which the table assets carry once issue 11's row counts are merged."""
    browser.open(f"{ui}/assets/asset_versions")
    browser.wait_for("document.body.innerText.includes('Latest materialization')", "the asset overview")
    try:
        browser.wait_for("document.body.innerText.includes('Row count')", "a Row count", timeout=20)
    finally:
        browser.screenshot(tmp_path / "asset_versions-overview.png")
