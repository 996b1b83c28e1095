"""Applying objects and deleting them behave as in Kubernetes, on a real cluster: an applied dump
never moves a running VM, deleting a VM deletes its VMI and its QEMU, and deleting a VMI in the
middle of a migration cleans up the target's incoming QEMU."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from livemig.api.builders import make_test_guest_vm
from livemig.cli.cluster_cmds import apply_one
from livemig.client import ApiClient
from livemig.errors import NotFound

from .conftest import clock, hco, local_cluster, migration, qemus_of, requires_qemu, vm, wait_until

pytestmark = requires_qemu


async def phase_of(client: ApiClient, kind: str, name: str) -> str | None:
    try:
        obj = await client.get(kind, name, "default")
    except NotFound:
        return None
    return (obj.get("status") or {}).get("phase")


async def scenario(folder: Path) -> None:
    async with local_cluster(folder, nodes=2) as (cluster, client):
        assert (await apply_one(client, vm("keeper"))).value == "created"
        assert (await apply_one(client, vm("keeper"))).value == "unchanged"
        await wait_until(
            "keeper runs", lambda: _is(phase_of(client, "vmis", "keeper"), "Running"), 60
        )
        running = await client.get("VirtualMachineInstance", "keeper", "default")
        home = running["status"]["nodeName"]
        elsewhere = next(n for n in cluster.node_names if n != home)
        pids = set(qemus_of(folder))

        # A dump of the VMI as another cluster saw it: another node, another uid, Failed.
        dump: dict[str, Any] = {k: v for k, v in running.items()}
        dump["metadata"] = {**running["metadata"], "uid": "x", "resourceVersion": "1"}
        dump["status"] = {"nodeName": elsewhere, "phase": "Failed"}
        await apply_one(client, dump)
        await clock.sleep(2.5)  # a few passes of every agent
        after = await client.get("VirtualMachineInstance", "keeper", "default")
        assert after["status"]["nodeName"] == home and after["status"]["phase"] == "Running"
        assert after["metadata"]["uid"] == running["metadata"]["uid"]
        assert pids <= set(qemus_of(folder)), "an applied dump stopped a running VM"

        # Deleting the VirtualMachine deletes its VMI (ownerReferences) and stops its QEMU.
        await client.delete("VirtualMachine", "keeper", "default")
        await wait_until("the VMI goes", lambda: _is(phase_of(client, "vmis", "keeper"), None), 30)
        await wait_until("its QEMU stops", lambda: _none_left(folder), 30)

        # A VMI deleted mid-migration: the migration fails and the target's QEMU is stopped.
        await client.create(hco(bandwidthPerMigration="4Mi", completionTimeoutPerGiB=10_000))
        bare = make_test_guest_vm("mover", dirty_rate="64Mi", working_set="96Mi")
        template = bare["spec"]["template"]
        await client.create(
            {
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachineInstance",
                "metadata": {"name": "mover", "namespace": "default", **template["metadata"]},
                "spec": template["spec"],
            }
        )
        await wait_until(
            "mover runs", lambda: _is(phase_of(client, "vmis", "mover"), "Running"), 60
        )
        await client.create(migration("m-mover", "mover"))
        await wait_until(
            "the migration runs",
            lambda: _is(phase_of(client, "migrations", "m-mover"), "Running"),
            30,
        )
        assert any(".incoming" in args for args in qemus_of(folder).values())
        await client.delete("VirtualMachineInstance", "mover", "default")

        async def failed() -> dict[str, Any] | None:
            m = await client.get("migrations", "m-mover", "default")
            return m if m["status"]["phase"] == "Failed" else None

        done = await wait_until("the migration fails", failed, 30)
        assert "was deleted" in done["status"]["migrationState"]["failureReason"]
        await wait_until("every QEMU stops", lambda: _none_left(folder), 30)


async def _is(value: Any, wanted: Any) -> bool:
    return bool(await value == wanted)


async def _none_left(folder: Path) -> bool:
    return not qemus_of(folder)


def test_apply_and_delete_behave_as_in_kubernetes(tmp_path: Path) -> None:
    asyncio.run(scenario(tmp_path))
