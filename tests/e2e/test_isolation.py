"""Separate hosts on one machine (``--isolate``): each node in its own network namespace, a
primary and a migration network. Which link a guest's memory crossed is read from the
interface byte counters. Needs root (namespaces, bridges); CI runs as root."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from livemig import isolation
from livemig.api.lifecycle import MigrationStatus, Phase
from livemig.cluster import LocalCluster

from .conftest import (
    hco,
    local_cluster,
    migration,
    requires_qemu,
    settled_exactly_once,
    vm,
    wait_until,
)

MiB = 2**20
pytestmark = [
    requires_qemu,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None,
        reason="network namespaces need root and iproute2 (.ci/run runs as root)",
    ),
]


async def running_on(client: Any, name: str) -> str | None:
    """The node the VMI ``name`` (namespace default) runs on, once it runs."""
    items, _ = await client.list("VirtualMachineInstance", "default")
    for v in items:
        st = v.get("status") or {}
        if v["metadata"]["name"] == name and st.get("phase") == "Running":
            return str(st.get("nodeName"))
    return None


def sent(cluster: LocalCluster, node: str) -> dict[str, int]:
    """Bytes the node has sent on each of its links (what the host-side end received)."""
    assert cluster.layout is not None
    n = cluster.layout.node(node)
    return {
        "primary": isolation.counters(n.primary_link)[1],
        "migration": isolation.counters(n.migration_link)[1],
    }


async def migrate(client: Any, name: str, vmi: str) -> dict[str, Any]:
    await client.create(migration(name, vmi))

    async def done() -> dict[str, Any] | None:
        m = await client.get("VirtualMachineInstanceMigration", name, "default")
        return m if MigrationStatus.of(m).finished else None

    return await wait_until(f"migration {name}", done, 60)


async def _isolated(folder: Path) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    async with local_cluster(folder, nodes=3, isolate=True) as (cluster, client):
        assert cluster.layout is not None
        seen["netns"] = [n.netns for n in cluster.layout.nodes]
        seen["links"] = [
            link for n in cluster.layout.nodes for link in (n.primary_link, n.migration_link)
        ]
        nodes = await client.list("Node")
        seen["addresses"] = {
            n["metadata"]["name"]: n["status"]["addresses"][0]["address"] for n in nodes[0]
        }
        await client.create(vm("big", ws="64Mi"))

        def where() -> Any:
            return running_on(client, "big")

        source = await wait_until("the VM running", where, 60)
        await asyncio.sleep(1.0)  # let the guest write its working set

        before = sent(cluster, source)
        first = await migrate(client, "over-primary", "big")
        seen["primary_run"] = (first, before, sent(cluster, source), source)

        # A network no node has: nowhere to go, and the migration says why.
        await client.create(hco(network="storage-net"))

        async def unschedulable() -> dict[str, Any] | None:
            m = await client.get("VirtualMachineInstanceMigration", "nowhere", "default")
            conds = (m.get("status") or {}).get("conditions") or []
            return next((c for c in conds if c.get("reason") == "Unschedulable"), None)

        await client.create(migration("nowhere", "big"))
        seen["no_network"] = await wait_until("an Unschedulable condition", unschedulable, 20)
        await client.delete("VirtualMachineInstanceMigration", "nowhere", "default")

        def with_network(o: dict[str, Any]) -> dict[str, Any]:
            o["spec"]["liveMigrationConfig"]["network"] = cluster.layout.migration_network  # type: ignore[union-attr]
            return o

        await client.modify(
            "HyperConverged", "kubevirt-hyperconverged", "openshift-cnv", with_network
        )
        source = await where()
        assert source is not None
        before = sent(cluster, source)
        second = await migrate(client, "over-migration-network", "big")
        seen["migration_run"] = (second, before, sent(cluster, source), source)
        await settled_exactly_once(client, folder, ["big"])
    return seen


def test_memory_crosses_the_dedicated_migration_network_only_when_it_is_set(
    tmp_path: Path,
) -> None:
    seen = asyncio.run(_isolated(tmp_path))
    netns_after = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout
    links_after = subprocess.run(
        ["ip", "-o", "link", "show"], capture_output=True, text=True, check=True
    ).stdout
    assert all(a.startswith("198.18.") for a in seen["addresses"].values())

    m, before, after, _ = seen["primary_run"]
    st = MigrationStatus.of(m)
    assert st.phase is Phase.SUCCEEDED, st.reason
    assert st.target_address is not None and "198.18." in st.target_address
    assert after["primary"] - before["primary"] > 60 * MiB
    assert after["migration"] - before["migration"] < 1 * MiB

    condition = seen["no_network"]
    assert "has no address on migration network storage-net" in condition["message"]

    m, before, after, _ = seen["migration_run"]
    st = MigrationStatus.of(m)
    assert st.phase is Phase.SUCCEEDED, st.reason
    assert st.target_address is not None and "198.19." in st.target_address
    assert after["migration"] - before["migration"] > 60 * MiB
    assert after["primary"] - before["primary"] < 5 * MiB  # API traffic only

    # Torn down whole: no namespace, no link left.
    for netns in seen["netns"]:
        assert netns not in netns_after
    for link in seen["links"]:
        assert f" {link}:" not in links_after and f" {link}@" not in links_after


async def _link_down_in_post_copy(folder: Path) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    async with local_cluster(folder, nodes=2, isolate=True) as (cluster, client):
        assert cluster.layout is not None
        await client.create(
            hco(
                network=cluster.layout.migration_network,
                allowPostCopy=True,
                completionTimeoutPerGiB=8,  # post-copy after 1 s for the 128Mi guest
                bandwidthPerMigration="16Mi",  # and then ~5 s of post-copy
            )
        )
        await client.create(vm("busy", rate="64Mi", ws="96Mi"))

        def where() -> Any:
            return running_on(client, "busy")

        source = await wait_until("the VM running", where, 60)
        await asyncio.sleep(1.0)
        await client.create(migration("through-an-outage", "busy"))

        async def in_post_copy() -> dict[str, Any] | None:
            m = await client.get("VirtualMachineInstanceMigration", "through-an-outage", "default")
            st = MigrationStatus.of(m)
            return m if st.phase is Phase.RUNNING and st.in_post_copy else None

        await wait_until("post-copy", in_post_copy, 30)
        link = cluster.layout.node(source).migration_link
        down = await asyncio.create_subprocess_exec("ip", "link", "set", link, "down")
        await down.wait()
        await asyncio.sleep(0.2)
        cut = await client.get("VirtualMachineInstanceMigration", "through-an-outage", "default")
        seen["during_outage"] = MigrationStatus.of(cut)
        await asyncio.sleep(3.0)  # a switch reboots; the TCP stream waits
        proc = await asyncio.create_subprocess_exec("ip", "link", "set", link, "up")
        await proc.wait()
        seen["done"] = await migrate_done(client, "through-an-outage")
        await settled_exactly_once(client, folder, ["busy"])
    return seen


async def migrate_done(client: Any, name: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        m = await client.get("VirtualMachineInstanceMigration", name, "default")
        return m if MigrationStatus.of(m).finished else None

    return await wait_until(f"migration {name}", done, 90)


def test_a_post_copy_migration_rides_out_a_migration_link_going_down(tmp_path: Path) -> None:
    """The dedicated network's link really goes down (no reset: the kernel just stops
    delivering) for 3 s while the guest runs on the target and pulls its pages: the migration
    finishes once the link is back, and the VM runs exactly once."""
    seen = asyncio.run(_link_down_in_post_copy(tmp_path))
    during = seen["during_outage"]
    assert during.phase is Phase.RUNNING and during.in_post_copy  # cut mid post-copy
    st = MigrationStatus.of(seen["done"])
    assert st.phase is Phase.SUCCEEDED, st.reason
