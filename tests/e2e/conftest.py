"""A real cluster for end-to-end tests: API server on 127.0.0.1, SQLite file, controller, node
agents and QEMU VMs, all started by the test and all stopped at its end."""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from livemig.api.builders import hyperconverged, make_test_guest_vm, migration_request
from livemig.api.lifecycle import VMIPhase, VMIStatus
from livemig.client import ApiClient
from livemig.clock import RealClock
from livemig.cluster import LocalCluster
from livemig.errors import NotFound

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
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "qemu-system" in args and str(folder) in args:
            found[int(proc.name)] = args
    return found


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
    names = {v["metadata"]["name"] for v in vms}

    async def running() -> bool:
        items, _ = await client.list("VirtualMachineInstance")
        mine = [i for i in items if i["metadata"]["name"] in names]
        return len(mine) == len(names) and all(
            (i.get("status") or {}).get("phase") == "Running" for i in mine
        )

    await wait_until("VMs running", running, 60)
    for other in all_nodes:
        await cordon(client, other, False)


async def finished(client: ApiClient, name: str) -> dict[str, Any] | None:
    m = await client.get("migrations", name, "default")
    return m if (m.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None


def qemu_folders(folder: Path) -> dict[int, str]:
    """pid → the VM folder of each QEMU process under ``folder`` (from its -pidfile)."""
    found = {}
    for pid, args in qemus_of(folder).items():
        parts = args.split()
        if "-pidfile" in parts:
            found[pid] = str(Path(parts[parts.index("-pidfile") + 1]).parent)
    return found


def ledgers(folder: Path) -> dict[str, dict[str, Any]]:
    """node → its agent's ledger, as on disk."""
    return {
        path.parent.name: json.loads(path.read_text())
        for path in (folder / "nodes").glob("*/vms.json")
    }


async def exactly_once(client: ApiClient, folder: Path, names: list[str]) -> str | None:
    """None when every named VM runs in exactly one QEMU, that QEMU is in the ledger of the
    node its VMI names, the VMI says Running, and no QEMU under ``folder`` is unmanaged;
    otherwise what is wrong (for wait_until: falsy means "not yet")."""
    procs = qemu_folders(folder)
    books = ledgers(folder)
    managed = {
        e["handle"]: node
        for node, book in books.items()
        for part in ("local", "incoming")
        for e in book.get(part, {}).values()
    }
    unmanaged = {pid: f for pid, f in procs.items() if f not in managed}
    if unmanaged:
        return f"unmanaged QEMUs: {unmanaged}"
    for name in names:
        try:
            vmi = await client.get("vmis", name, "default")
        except NotFound:
            return f"VMI {name} does not exist (being restarted?)"
        st = VMIStatus.of(vmi)
        if st.phase is not VMIPhase.RUNNING or st.node is None:
            return f"VMI {name} is {st.phase.value or 'Pending'} ({st.reason})"
        entry = books.get(st.node, {}).get("local", {}).get(f"default/{name}")
        if entry is None:
            return f"VMI {name} says {st.node}, whose ledger does not have it"
        runs = [pid for pid, f in procs.items() if f == entry["handle"]]
        copies = [pid for pid, args in qemus_of(folder).items() if f"guest=default_{name} " in args]
        if len(runs) != 1 or len(copies) != 1:
            return f"VM {name}: {len(runs)} QEMU in its ledger folder, {len(copies)} in all"
        ready = next(c for c in vmi["status"]["conditions"] if c["type"] == "Ready")
        if f"pid {runs[0]} " not in ready["message"] + " ":
            return f"VMI {name}'s Ready condition names another process: {ready['message']}"
    return None


async def settled_exactly_once(
    client: ApiClient, folder: Path, names: list[str], within: float = 60
) -> None:
    """Wait until :func:`exactly_once` holds; fail with the last thing wrong otherwise."""
    deadline = clock.now() + within
    while (wrong := await exactly_once(client, folder, names)) is not None:
        if clock.now() > deadline:
            raise AssertionError(f"not exactly once after {within} s: {wrong}")
        await clock.sleep(0.2)
