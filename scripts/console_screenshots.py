"""Regenerate the web console's screenshots in docs/ (shown in the README).

Starts a local 3-node cluster with QEMU test guests, the demo's settings and policies, runs a
few migrations (one held in progress by a bandwidth cap), and photographs each view on a laptop
screen and the migrations view on a phone, with headless Debian chromium.

    .venv/bin/python scripts/console_screenshots.py [--out docs]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

from livemig.api.builders import migration_request
from livemig.api.models import to_dict
from livemig.api.vmi_status import VMIPhase, VMIStatus
from livemig.cli.demo import manifests
from livemig.client import ApiClient
from livemig.clock import RealClock
from livemig.cluster import LocalCluster

CHROMIUM = "/usr/bin/chromium"
clock = RealClock()
VIEWS = [
    ("overview", "/ui/"),
    ("migrations", "/ui/migrations"),
    ("vms", "/ui/vms"),
    ("vm", "/ui/vms/default/db-heavy"),
    ("policies", "/ui/policies"),
    ("policy-form", "/ui/policies/heavy-workloads"),
    ("settings", "/ui/settings"),
]


async def wait_for(check: Any, within: float) -> None:
    deadline = clock.now() + within
    while not await check():
        if clock.now() > deadline:
            raise RuntimeError("timed out")
        await clock.sleep(0.3)


async def shoot(out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="livemig-shots-") as tmp:
        cluster = LocalCluster(Path(tmp), nodes=3, node_memory=2 * 2**30)
        await cluster.start()
        client: ApiClient = cluster.client()
        try:
            for item in manifests().objects:
                await client.create(to_dict(item.obj))

            async def running() -> bool:
                items, _ = await client.list("VirtualMachineInstance")
                return len(items) == 6 and all(
                    VMIStatus.of(i).phase is VMIPhase.RUNNING for i in items
                )

            await wait_for(running, 90)
            for name in ("web-1", "idle-1"):
                await client.create(migration_request(f"{name}-moved", name, "default"))
            await clock.sleep(4)
            await client.create(migration_request("db-heavy-moving", "db-heavy", "default"))
            await clock.sleep(2)  # in progress, under its policy's 32Mi/s cap
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                for label, size in (("", (1280, 860)), ("-phone", (390, 844))):
                    page = await browser.new_page(
                        viewport={"width": size[0], "height": size[1]}, device_scale_factor=1
                    )
                    await page.goto(cluster.url + "/ui/login")
                    await page.fill("#token", cluster.token)
                    await page.click("button[type=submit]")
                    await page.wait_for_url("**/ui/")
                    for name, path in VIEWS if not label else VIEWS[:2]:
                        await page.goto(cluster.url + path)
                        await page.wait_for_timeout(600)
                        target = out / f"console-{name}{label}.png"
                        await page.screenshot(path=str(target), full_page=not label)
                        print(target)
                    await page.close()
                await browser.close()
        finally:
            await cluster.stop(stop_vms=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(shoot(args.out))


if __name__ == "__main__":
    main()
