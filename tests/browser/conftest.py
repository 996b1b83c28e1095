"""A real `livemig up` cluster (its own process: API server, SQLite, controller, agents, QEMU
test guests) and headless Chromium driving the web console through Playwright. The browser is
Debian's chromium (`.ci/run` installs it); Playwright's own browser download is never used."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from livemig.audit import qemu_processes

CHROMIUM = "/usr/bin/chromium"
LIVEMIG = str(Path(sys.executable).parent / "livemig")

#: For each browser test module: what it needs, or why it is skipped.
requires_browser = [
    pytest.mark.skipif(
        shutil.which("qemu-system-x86_64") is None,
        reason="qemu-system-x86_64 is not installed (.ci/run installs it)",
    ),
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason="Debian's chromium is not installed (.ci/run installs it)",
    ),
]


@dataclass
class Cluster:
    url: str
    token: str
    state: Path

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )

    def get(self, kind: str, name: str | None = None, namespace: str | None = None) -> Any:
        """One object (namespace default unless given), or a list of every namespace's."""
        with self.api() as c:
            path = f"/apis/{kind}/{name}" if name else f"/apis/{kind}"
            params = {"namespace": namespace or "default"} if name else {}
            if namespace and not name:
                params["namespace"] = namespace
            r = c.get(path, params=params)
            r.raise_for_status()
            return r.json()

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        with self.api() as c:
            r = c.post(f"/apis/{obj['kind']}", json=obj)
            r.raise_for_status()
            return dict(r.json())


def wait(what: str, check: Any, within: float = 60.0, every: float = 0.2) -> Any:
    deadline = time.monotonic() + within
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        time.sleep(every)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    state = tmp_path_factory.mktemp("console") / "state"
    log = (state.parent / "up.log").open("w")
    env = {**os.environ, "LIVEMIG_STATE": str(state)}
    up = subprocess.Popen(
        [LIVEMIG, "up", "--nodes", "3"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait("livemig up", lambda: (state / "endpoint.json").exists() or up.poll() is not None, 30)
        assert up.poll() is None, (state.parent / "up.log").read_text()
        url = json.loads((state / "endpoint.json").read_text())["url"]
        c = Cluster(url, (state / "token").read_text().strip(), state)
        wait("three nodes", lambda: len(c.get("Node")["items"]) == 3, 30)
        yield c
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
        log.close()
        left = qemu_processes(state)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, f"QEMU processes left running: {left}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, cluster: Cluster) -> Iterator[Any]:
    """A logged-in page (its own browser context: its own cookies)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.on("dialog", lambda d: d.accept())  # "Drain node-1?" is answered yes
    pg.goto(cluster.url + "/ui/")
    pg.fill("#token", cluster.token)
    pg.click("button[type=submit]")
    pg.wait_for_url("**/ui/")
    try:
        yield pg
    finally:
        context.close()
