"""A real cluster for end-to-end tests: API server on 127.0.0.1, SQLite file, controller, node
agents and QEMU VMs, all started by the test and all stopped at its end."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from livemig.api.builders import hyperconverged, make_test_guest_vm, migration_request
from livemig.audit import audit, qemu_processes
from livemig.client import ApiClient
from livemig.clock import RealClock
from livemig.cluster import LocalCluster

MiB = 2**20
clock = RealClock()
requires_qemu = pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None,
    reason="qemu-system-x86_64 is not installed (.ci/run installs it)",
)


@asynccontextmanager
async def local_cluster(
    folder: Path, nodes: int = 3, **kw: Any
) -> AsyncIterator[tuple[LocalCluster, ApiClient]]:
    cluster = LocalCluster(folder, nodes=nodes, node_memory=2 * 2**30, **kw)
    await cluster.start()
    try:
        client = cluster.client()
        await wait_until("nodes report", lambda: _nodes(client, nodes), 20)
        yield cluster, client
    finally:
        await cluster.stop(stop_vms=True)
        leftover = _kill_qemus_in(folder)  # a safety net, and a failure if it was needed
        assert not leftover, f"QEMU processes left running: {leftover}"


def qemus_of(folder: Path) -> dict[int, str]:
    """pid → command line of the QEMU processes whose files are in ``folder``."""
    return qemu_processes(folder)


def _kill_qemus_in(folder: Path) -> list[int]:
    leftover = list(qemus_of(folder))
    for pid in leftover:
        os.kill(pid, signal.SIGKILL)
    return leftover


async def _nodes(client: ApiClient, n: int) -> bool:
    return len((await client.list("Node"))[0]) == n


async def wait_until(what: str, check: Callable[[], Awaitable[Any]], within: float) -> Any:
    deadline = clock.now() + within
    while True:
        result = await check()
        if result:
            return result
        if clock.now() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await clock.sleep(0.1)


def vm(
    name: str,
    labels: dict[str, str] | None = None,
    rate: str = "0",
    ws: str = "32Mi",
    memory: str = "128Mi",
) -> dict[str, Any]:
    return make_test_guest_vm(name, "default", labels, rate, ws, memory)


def hco(**settings: Any) -> dict[str, Any]:
    return hyperconverged(**settings)


def policy(name: str, selector: dict[str, str], **settings: Any) -> dict[str, Any]:
    return {
        "apiVersion": "migrations.kubevirt.io/v1alpha1",
        "kind": "MigrationPolicy",
        "metadata": {"name": name},
        "spec": {"selectors": {"virtualMachineInstanceSelector": selector}, **settings},
    }


def migration(name: str, vmi: str) -> dict[str, Any]:
    return migration_request(name, vmi)


async def cordon(client: ApiClient, node: str, on: bool) -> None:
    def change(o: dict[str, Any]) -> dict[str, Any]:
        o.setdefault("spec", {})["unschedulable"] = on
        return o

    await client.modify("Node", node, None, change)


async def start_vms_on(
    client: ApiClient, node: str, all_nodes: list[str], vms: list[dict[str, Any]]
) -> None:
    """Create VMs so they all start on ``node`` (the others cordoned meanwhile)."""
    for other in all_nodes:
        await cordon(client, other, other != node)
    for v in vms:
        await client.create(v)
    names = {(v["metadata"].get("namespace", "default"), v["metadata"]["name"]) for v in vms}

    async def running() -> bool:
        items, _ = await client.list("VirtualMachineInstance")
        mine = [i for i in items if (i["metadata"]["namespace"], i["metadata"]["name"]) in names]
        return len(mine) == len(names) and all(
            (i.get("status") or {}).get("phase") == "Running" for i in mine
        )

    await wait_until("VMs running", running, 60)
    for other in all_nodes:
        await cordon(client, other, False)


async def finished(client: ApiClient, name: str) -> dict[str, Any] | None:
    m = await client.get("migrations", name, "default")
    return m if (m.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None


async def exactly_once(client: ApiClient, folder: Path, names: list[str]) -> str | None:
    """None when every named VM (namespace default) runs exactly once (livemig.audit);
    otherwise what is wrong (for wait_until: falsy means "not yet")."""
    found = await audit(client, folder, [("default", n) for n in names])
    return None if found.ok else str(found)


async def settled_exactly_once(
    client: ApiClient, folder: Path, names: list[str], within: float = 60
) -> None:
    """Wait until :func:`exactly_once` holds; fail with the last thing wrong otherwise."""
    deadline = clock.now() + within
    while (wrong := await exactly_once(client, folder, names)) is not None:
        if clock.now() > deadline:
            raise AssertionError(f"not exactly once after {within} s: {wrong}")
        await clock.sleep(0.2)
