"""The web console's migrations page with many migrations, in headless Chromium: how long it
takes to load, and whether it stays responsive while the migrations change underneath it.

A real API server over a real SQLite file holds N migrations (by default 200: a fifth Running
with figures, the rest Succeeded or Failed). The page is loaded after logging in; then, for
--seconds, the Running ones' figures are written at --writes per second (as agents report),
while the page receives live updates over SSE. Printed:

- page load: from navigation to the table's last row in the DOM (target < 1 s);
- fragment render time on the server (p50, p95) and fragment size;
- live updates received, and the age of the shown figures (write to swap, p50/p95);
- responsiveness: the longest gap between animation frames and the main thread's long tasks
  (> 50 ms) while updating, and how long a click on a Cancel button took to answer.

    python bench/console.py [--migrations 200] [--seconds 10] [--writes 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

from livemig.api.builders import migration_request
from livemig.api.lifecycle import Figures, MigrationStatus
from livemig.api.status import timestamp
from livemig.policy import ClusterConfig, effective_configuration
from livemig.server.run import start_server
from livemig.server.web.views import migration_rows
from livemig.store.sqlite import SQLiteStore
from report import emitter  # bench/report.py, beside this script

emit = emitter("console")
CHROMIUM = "/usr/bin/chromium"
MiB = 2**20
WATCH_JS = """
() => {
  window.__gaps = []; window.__long = [];
  let last = performance.now();
  const frame = (t) => { window.__gaps.push(t - last); last = t; requestAnimationFrame(frame); };
  requestAnimationFrame(frame);
  new PerformanceObserver((l) => l.getEntries().forEach(e => window.__long.push(e.duration)))
    .observe({type: "longtask", buffered: true});
  window.__swaps = [];
  document.body.addEventListener("htmx:sseMessage", () => window.__swaps.push(Date.now()));
}
"""


def migration(i: int, now: float) -> dict[str, Any]:
    from datetime import UTC, datetime

    obj = migration_request(f"vm-{i:03d}-migration", f"vm-{i:03d}", "default")
    stamp = timestamp(datetime.fromtimestamp(now - 30, UTC))
    st = MigrationStatus().admit("node-1", datetime.fromtimestamp(now - 30, UTC))
    st = st.schedule(
        "node-1",
        "node-2",
        512 * MiB,
        None,
        {**effective_configuration(ClusterConfig()).as_dict(), "bandwidthPerMigration": 64 * MiB},
        datetime.fromtimestamp(now - 29, UTC),
    )
    st = st.preparing(datetime.fromtimestamp(now - 29, UTC))
    st = st.target_ready("tcp:127.0.0.1:1", datetime.fromtimestamp(now - 28, UTC))
    st = st.start(datetime.fromtimestamp(now - 28, UTC))
    st = st.progress(Figures(512 * MiB, 100 * MiB, 412 * MiB, 4 * MiB, 64 * MiB, 1, 2.0))
    if i % 5:
        end = datetime.fromtimestamp(now - 20, UTC)
        if i % 7 == 0:
            st = st.fail("progress timeout", end)
        else:
            st = st.finish(
                end, Figures(512 * MiB, 530 * MiB, 0, 0, 64 * MiB, 3, 8.0), 12, 8.0, None
            )
    obj["status"] = st.to_status()
    obj["metadata"]["creationTimestamp"] = stamp
    return obj


async def run(n: int, seconds: float, writes: float) -> None:
    with tempfile.TemporaryDirectory(prefix="livemig-bench-console-") as tmp:
        store = SQLiteStore(Path(tmp) / "livemig.db")
        now = time.time()
        running = []
        for i in range(n):
            obj = migration(i, now)
            status = obj.pop("status")
            created = store.create(obj)
            created["status"] = status
            stored = store.update(created, "status")
            if MigrationStatus.of(stored).phase.value == "Running":
                running.append(stored["metadata"]["name"])
        renders = []
        for _ in range(5):
            t0 = time.perf_counter()
            migration_rows(store, time.time())
            renders.append((time.perf_counter() - t0) * 1000)
        server = await start_server(store, "bench-token")
        try:
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                await page.goto(server.url + "/ui/login")
                await page.fill("#token", "bench-token")
                await page.click("button[type=submit]")
                await page.wait_for_url("**/ui/")
                t0 = time.perf_counter()
                await page.goto(server.url + "/ui/migrations", wait_until="commit")
                await page.wait_for_selector(
                    f"tr[data-migration='default/vm-{n - 1:03d}-migration']", state="attached"
                )
                load = (time.perf_counter() - t0) * 1000
                size = len((await page.content()).encode())
                await page.evaluate(WATCH_JS)
                # Agents reporting: the Running migrations' figures change.
                written: list[float] = []
                deadline = time.monotonic() + seconds
                k = 0
                while time.monotonic() < deadline:
                    name = running[k % len(running)]
                    current = store.get("VirtualMachineInstanceMigration", "default", name)
                    st = MigrationStatus.of(current)
                    f = st.figures or Figures()
                    done = min(f.total, f.processed + 4 * MiB)
                    current["status"] = st.progress(
                        Figures(
                            f.total,
                            done,
                            f.total - done,
                            f.dirty_rate,
                            f.transfer_rate,
                            f.iterations,
                            f.elapsed + 0.1,
                        )
                    ).to_status(current["status"])
                    await asyncio.to_thread(store.update, current, "status")
                    written.append(time.time() * 1000)
                    k += 1
                    await asyncio.sleep(1 / writes)
                t1 = time.perf_counter()
                await page.click("tr[data-phase='Running'] button")
                await page.wait_for_selector("#message span")
                click = (time.perf_counter() - t1) * 1000
                gaps = await page.evaluate("window.__gaps")
                longs = await page.evaluate("window.__long")
                swaps = await page.evaluate("window.__swaps")
                await browser.close()
        finally:
            await server.stop()
            store.close()
        emit("migrations", n, "count")
        emit("page_load", round(load, 1), "ms", "< 1000")
        emit("page_size", round(size / 1024, 1), "KiB")
        emit("fragment_render_p50", round(statistics.median(renders), 1), "ms")
        emit("fragment_render_max", round(max(renders), 1), "ms")
        emit("status_writes", len(written), "count")
        emit("live_updates_received", len(swaps), "count")
        emit("longest_frame_gap", round(max(gaps[5:] or [0]), 1), "ms")
        emit("long_tasks", len(longs), "count")
        emit("long_task_max", round(max(longs or [0]), 1), "ms")
        emit("cancel_click_answered", round(click, 1), "ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--migrations", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--writes", type=float, default=10.0, help="status writes per second")
    args = ap.parse_args()
    asyncio.run(run(args.migrations, args.seconds, args.writes))


if __name__ == "__main__":
    main()
