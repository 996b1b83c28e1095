"""Node drains end to end: the `livemig drain` command (a real process) against a real cluster
(HTTP API, SQLite, controller, agents, QEMU test guests)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from livemig.api.lifecycle import EVACUATION_ANNOTATION
from livemig.client import ApiClient

from .conftest import (
    hco,
    local_cluster,
    requires_qemu,
    settled_exactly_once,
    start_vms_on,
    vm,
    wait_until,
)
from .test_cluster import intervals, max_overlap

pytestmark = requires_qemu
LIVEMIG = str(Path(sys.executable).parent / "livemig")


async def cli(folder: Path, *args: str, within: float = 120) -> tuple[int, str, str]:
    """Run ``livemig ARGS`` against the cluster in ``folder``; (exit status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        LIVEMIG,
        *args,
        env={**os.environ, "LIVEMIG_STATE": str(folder)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), within)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def node(client: ApiClient, name: str) -> dict[str, Any]:
    return await client.get("Node", name)


def drain_of(n: dict[str, Any]) -> dict[str, Any]:
    return (n.get("status") or {}).get("drain") or {}


def draining_condition(n: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in n["status"]["conditions"] if c["type"] == "Draining")


async def label(client: ApiClient, name: str, labels: dict[str, str]) -> None:
    def change(o: dict[str, Any]) -> dict[str, Any]:
        o["metadata"].setdefault("labels", {}).update(labels)
        return o

    await client.modify("Node", name, None, change)


async def evacuations(client: ApiClient, node_name: str) -> list[dict[str, Any]]:
    items, _ = await client.list("VirtualMachineInstanceMigration")
    return [
        m
        for m in items
        if (m["metadata"].get("annotations") or {}).get(EVACUATION_ANNOTATION) == node_name
    ]


async def _six_and_a_pinned_one(folder: Path) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    async with local_cluster(folder, nodes=3) as (cluster, client):
        await client.create(
            hco(
                parallelMigrationsPerCluster=5,
                parallelOutboundMigrationsPerNode=2,
                bandwidthPerMigration="48Mi",
            )
        )
        first, *_ = nodes = cluster.node_names
        await label(client, first, {"disk": "nvme"})
        movers = [vm(f"vm-{i}", rate=("2Mi" if i % 2 else "0")) for i in range(6)]
        pinned = vm("pinned")
        pinned["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "nvme"}
        await start_vms_on(client, first, nodes, [*movers, pinned])

        seen["wide"] = await cli(folder, "get", "vmis", "-o", "wide")
        seen["dry"] = await cli(folder, "drain", first, "--dry-run")
        seen["cordoned_by_dry_run"] = bool((await node(client, first))["spec"].get("unschedulable"))
        seen["started"] = await cli(folder, "drain", first)

        async def only_the_pinned_one_left() -> dict[str, Any] | None:
            d = drain_of(await node(client, first))
            return d if d.get("vmsLeft") == 1 and d.get("migrated") == 6 else None

        seen["blocked_drain"] = await wait_until("six VMs moved", only_the_pinned_one_left, 120)
        seen["blocked_condition"] = draining_condition(await node(client, first))
        seen["gave_up"] = await cli(folder, "drain", first, "--wait", "--timeout", "1s")
        seen["nodes_table"] = await cli(folder, "get", "nodes")
        # The operator stops the VM that cannot move; the drain finishes.
        await client.delete("VirtualMachine", "pinned", "default")
        seen["finished"] = await cli(folder, "drain", first, "--wait", "--timeout", "60s")
        seen["node"] = await node(client, first)
        seen["evacuations"] = await evacuations(client, first)
        vmis, _ = await client.list("VirtualMachineInstance")
        seen["placement"] = {v["metadata"]["name"]: v["status"]["nodeName"] for v in vmis}
        await settled_exactly_once(client, folder, [f"vm-{i}" for i in range(6)])
        events, _ = await client.list("Event")
        seen["events"] = [(e["reason"], e["involvedObject"]["name"], e["message"]) for e in events]
        seen["uncordon"] = await cli(folder, "uncordon", first)
        seen["after_uncordon"] = await node(client, first)
    return seen


def test_a_drain_empties_the_node_within_the_limits_and_explains_what_blocks(
    tmp_path: Path,
) -> None:
    seen = asyncio.run(_six_and_a_pinned_one(tmp_path))

    # LIVE-MIGRATABLE says whether another node could take the VMI now.
    code, out, _ = seen["wide"]
    header = out.splitlines()[0].split()
    column = header.index("LIVE-MIGRATABLE")
    rows = {line.split()[0]: line.split()[column] for line in out.splitlines()[1:]}
    assert rows["pinned"] == "False" and rows["vm-0"] == "True"

    code, out, _ = seen["dry"]
    assert code == 0 and "nothing is changed now" in out
    assert out.count("will migrate") == 6
    assert "BLOCKED" in out and "lacks label disk=nvme" in out
    assert not seen["cordoned_by_dry_run"]

    code, out, _ = seen["started"]
    assert code == 0 and "node/node-1 cordoned" in out and "7 VMI(s) to move" in out

    blocked = seen["blocked_drain"]["blocked"]
    assert [b["vmi"] for b in blocked] == ["default/pinned"]
    assert (
        "no node fits" in blocked[0]["reason"]
        and "node-2 lacks label disk=nvme" in (blocked[0]["reason"])
    )
    assert seen["blocked_condition"]["reason"] == "DrainBlocked"
    assert "default/pinned" in seen["blocked_condition"]["message"]

    code, out, err = seen["gave_up"]
    assert code == 1
    assert "timed out after 1s" in err and "1 VMI(s) left" in err
    assert "blocked: default/pinned: cannot migrate" in err

    code, out, _ = seen["nodes_table"]
    row = next(line for line in out.splitlines() if line.startswith("node-1"))
    assert "Ready,SchedulingDisabled,Draining" in row

    code, out, err = seen["finished"]
    assert code == 0, out + err
    assert "node/node-1 drained: 6 VMI(s) migrated" in out
    assert draining_condition(seen["node"])["reason"] == "Drained"

    # One evacuation per VM, each system-maintenance, never more than 2 out of node-1 at once.
    evac = seen["evacuations"]
    assert sorted(m["spec"]["vmiName"] for m in evac) == [f"vm-{i}" for i in range(6)]
    assert all(m["spec"]["priority"] == "system-maintenance" for m in evac)
    assert all(m["status"]["phase"] == "Succeeded" for m in evac)
    assert max_overlap([intervals(m) for m in evac]) == 2
    assert set(seen["placement"].values()) <= {"node-2", "node-3"}

    reasons = {(r, n) for r, n, _ in seen["events"]}
    assert ("Evicting", "vm-0") in reasons
    assert ("DrainBlocked", "node-1") in reasons
    assert ("Drained", "node-1") in reasons

    code, out, _ = seen["uncordon"]
    assert code == 0 and "node/node-1 uncordoned" in out
    after = seen["after_uncordon"]
    assert not after["spec"].get("unschedulable") and not after["spec"].get("taints")


async def _retry_shutdown_and_uncordon(folder: Path) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    # A VM that dirties far more than the cap allows, with no post-copy: it fails its
    # completion timeout, and the drain retries it after the (shortened) backoff.
    async with local_cluster(folder, nodes=2, evacuation_backoff=(1.0, 2.0)) as (cluster, client):
        await client.create(
            hco(
                bandwidthPerMigration="8Mi",
                completionTimeoutPerGiB=8,  # 1 s for the 128Mi guest
                parallelOutboundMigrationsPerNode=1,
            )
        )
        first, _ = nodes = cluster.node_names
        await label(client, first, {"disk": "nvme"})
        heavy = vm("heavy", rate="64Mi", ws="96Mi")
        maybe = vm("maybe")
        maybe["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "nvme"}
        maybe["spec"]["template"]["spec"]["evictionStrategy"] = "LiveMigrateIfPossible"
        await start_vms_on(client, first, nodes, [heavy, maybe])
        old_uid = (await client.get("VirtualMachineInstance", "maybe", "default"))["metadata"][
            "uid"
        ]
        code, _, err = await cli(folder, "drain", first)
        assert code == 0, err

        async def two_failures() -> list[dict[str, Any]] | None:
            failed = [
                m
                for m in await evacuations(client, first)
                if (m.get("status") or {}).get("phase") == "Failed"
            ]
            return failed if len(failed) >= 2 else None

        seen["failed"] = await wait_until("two failed evacuations", two_failures, 90)

        async def restarted() -> dict[str, Any] | None:
            try:
                v = await client.get("VirtualMachineInstance", "maybe", "default")
            except Exception:
                return None
            return v if v["metadata"]["uid"] != old_uid else None

        seen["maybe"] = await wait_until("the VMI shut down and restarted", restarted, 30)
        code, _, err = await cli(folder, "uncordon", first)
        assert code == 0, err

        async def no_pending() -> bool:
            ms = await evacuations(client, first)
            return all(
                (m.get("status") or {}).get("phase") in ("Running", "Succeeded", "Failed")
                for m in ms
            )

        await wait_until("pending evacuations cancelled", no_pending, 20)
        await asyncio.sleep(3)  # longer than the backoff: a live drain would have retried
        seen["after"] = await evacuations(client, first)
        seen["node"] = await node(client, first)
        events, _ = await client.list("Event")
        seen["events"] = [(e["reason"], e["involvedObject"]["name"], e["message"]) for e in events]
    return seen


def test_failed_evacuations_are_retried_and_uncordon_stops_the_drain(tmp_path: Path) -> None:
    seen = asyncio.run(_retry_shutdown_and_uncordon(tmp_path))
    failed = sorted(seen["failed"], key=lambda m: m["metadata"]["name"])
    assert [m["metadata"]["name"] for m in failed[:2]] == [
        "heavy-evacuation-1",
        "heavy-evacuation-2",
    ]
    assert "completion timeout" in failed[0]["status"]["migrationState"]["failureReason"]
    # The retry waited the backoff after the first failure.
    ended = failed[0]["status"]["migrationState"]["endTimestamp"]
    created = failed[1]["metadata"]["creationTimestamp"]
    assert created > ended

    # LiveMigrateIfPossible and nowhere to go: shut down (its VM starts it again).
    assert any(
        r == "Evicting" and n == "maybe" and "shutting it down" in msg
        for r, n, msg in seen["events"]
    )

    # Uncordoned: nothing of the drain is pending, and no new attempt was made.
    names = {m["metadata"]["name"] for m in seen["after"]}
    assert all((m.get("status") or {}).get("phase") != "Pending" for m in seen["after"])
    assert len(names) <= len(seen["failed"]) + 1
    cond = next(c for c in seen["node"]["status"]["conditions"] if c["type"] == "Draining")
    assert cond["reason"] == "DrainCancelled"
    assert "drain" not in seen["node"]["status"]
