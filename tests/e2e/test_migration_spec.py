"""VirtualMachineInstanceMigration's spec as upstream has it, on a real cluster:
addedNodeSelector restricts the target, sendTo/receive are accepted and refused with a reason."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from livemig.api.builders import migration_request

from .conftest import finished, local_cluster, requires_qemu, start_vms_on, vm, wait_until

pytestmark = requires_qemu


async def scenario(folder: Path) -> dict[str, Any]:
    async with local_cluster(folder, nodes=3) as (cluster, client):
        nodes = cluster.node_names
        await start_vms_on(client, nodes[0], nodes, [vm("a")])

        def zone_b(o: dict[str, Any]) -> dict[str, Any]:
            o["metadata"].setdefault("labels", {})["zone"] = "b"
            return o

        await client.modify("Node", nodes[2], None, zone_b)
        narrowed = migration_request("to-b", "a")
        narrowed["spec"]["addedNodeSelector"] = {"zone": "b"}
        await client.create(narrowed)
        moved = await wait_until("to-b", lambda: finished(client, "to-b"), 60)

        nowhere = migration_request("nowhere", "a")
        nowhere["spec"]["addedNodeSelector"] = {"zone": "z"}
        await client.create(nowhere)

        async def stuck() -> dict[str, Any] | None:
            m = await client.get("migrations", "nowhere", "default")
            conds = {c["type"]: c for c in (m.get("status") or {}).get("conditions", [])}
            c = conds.get("Scheduled")
            return c if c and c["reason"] == "Unschedulable" else None

        unschedulable = await wait_until("nowhere is unschedulable", stuck, 30)
        await client.delete("migrations", "nowhere", "default")

        remote = migration_request("remote", "a")
        remote["spec"]["sendTo"] = {"connectURL": "https://other:443", "migrationID": "m1"}
        await client.create(remote)
        refused = await wait_until("remote", lambda: finished(client, "remote"), 30)
        return {"moved": moved, "unschedulable": unschedulable, "refused": refused}


def test_added_node_selector_and_cross_cluster_fields(tmp_path: Path) -> None:
    out = asyncio.run(scenario(tmp_path))
    moved = out["moved"]
    assert moved["status"]["phase"] == "Succeeded", moved["status"]
    assert moved["status"]["migrationState"]["targetNode"] == "node-3"  # the only zone=b node
    assert "lacks label zone=z" in out["unschedulable"]["message"]
    refused = out["refused"]["status"]
    assert refused["phase"] == "Failed"
    assert (
        "cross-cluster migration (spec.sendTo/spec.receive) is not supported"
        in (refused["migrationState"]["failureReason"])
    )


async def instancetype_scenario(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    async with local_cluster(folder, nodes=1) as (_cluster, client):
        typed = vm("typed")
        typed["spec"]["instancetype"] = {"name": "u1.small"}  # the cluster-scoped kind
        del typed["spec"]["template"]["spec"]["domain"]["memory"]
        await client.create(typed)

        async def waiting() -> dict[str, Any] | None:
            got = await client.get("vms", "typed", "default")
            conds = {c["type"]: c for c in (got.get("status") or {}).get("conditions", [])}
            return conds.get("Synchronized")

        missing = await wait_until("the missing instancetype is reported", waiting, 30)
        await client.create(
            {
                "apiVersion": "instancetype.kubevirt.io/v1beta1",
                "kind": "VirtualMachineClusterInstancetype",
                "metadata": {"name": "u1.small"},
                "spec": {"cpu": {"guest": 1}, "memory": {"guest": "192Mi"}},
            }
        )

        async def running() -> dict[str, Any] | None:
            try:
                got = await client.get("vmis", "typed", "default")
            except Exception:
                return None
            return got if (got.get("status") or {}).get("phase") == "Running" else None

        started = await wait_until("the VM starts with its instancetype", running, 60)
        return missing, started


def test_a_vm_gets_its_memory_from_its_instancetype_when_it_starts(tmp_path: Path) -> None:
    missing, started = asyncio.run(instancetype_scenario(tmp_path))
    assert missing["reason"] == "FailedCreate"
    assert "VirtualMachineClusterInstancetype/u1.small does not exist" in missing["message"]
    assert started["spec"]["domain"]["memory"]["guest"] == "192Mi"
