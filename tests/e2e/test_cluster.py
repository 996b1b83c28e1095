"""The control plane end to end: real HTTP API, SQLite, controller, node agents, QEMU."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

from livemig.api.status import parse_timestamp

from .conftest import (
    MiB,
    clock,
    finished,
    hco,
    local_cluster,
    migration,
    policy,
    requires_qemu,
    start_vms_on,
    vm,
    wait_until,
)

pytestmark = requires_qemu


def intervals(m: dict[str, Any]) -> tuple[datetime, datetime]:
    """When a migration held a parallel slot: from Scheduling to its end."""
    times = {
        t["phase"]: parse_timestamp(t["phaseTransitionTimestamp"])
        for t in m["status"]["phaseTransitionTimestamps"]
    }
    return times["Scheduling"], times[m["status"]["phase"]]


def max_overlap(spans: list[tuple[datetime, datetime]]) -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    best = now = 0
    for _, d in edges:
        now += d
        best = max(best, now)
    return best


async def _limits(folder: Path) -> tuple[list[dict[str, Any]], dict[str, str]]:
    async with local_cluster(folder, nodes=3) as (cluster, client):
        await client.create(
            hco(
                parallelMigrationsPerCluster=2,
                parallelOutboundMigrationsPerNode=1,
                bandwidthPerMigration="24Mi",
            )
        )
        nodes = cluster.node_names
        await start_vms_on(client, nodes[0], nodes, [vm("a1"), vm("a2"), vm("a3")])
        await start_vms_on(client, nodes[1], nodes, [vm("b1"), vm("b2")])
        sources = {n: nodes[0] for n in ("a1", "a2", "a3")} | {"b1": nodes[1], "b2": nodes[1]}
        for name in sources:
            await client.create(migration(f"m-{name}", name))

        async def all_done() -> list[dict[str, Any]] | None:
            ms = [await finished(client, f"m-{n}") for n in sources]
            return None if any(m is None for m in ms) else ms  # type: ignore[return-value]

        return await wait_until("migrations", all_done, 120), sources


def test_cluster_and_per_node_limits_are_never_exceeded(tmp_path: Path) -> None:
    done, sources = asyncio.run(_limits(tmp_path))
    assert all(m["status"]["phase"] == "Succeeded" for m in done), [
        (m["metadata"]["name"], m["status"]["migrationState"].get("failureReason")) for m in done
    ]
    spans = [intervals(m) for m in done]
    assert max_overlap(spans) == 2  # the cluster limit, reached but never exceeded
    for node in set(sources.values()):
        mine = [intervals(m) for m in done if m["status"]["migrationState"]["sourceNode"] == node]
        assert max_overlap(mine) == 1  # one at a time out of each node


async def _policy(folder: Path) -> dict[str, Any]:
    async with local_cluster(folder, nodes=2) as (cluster, client):
        await client.create(
            policy(
                "slow-lane",
                {"tier": "archive"},
                bandwidthPerMigration="16Mi",
                allowAutoConverge=True,
            )
        )
        await start_vms_on(
            client,
            cluster.node_names[0],
            cluster.node_names,
            [vm("arc", {"tier": "archive"}, ws="48Mi")],
        )
        await client.create(migration("m", "arc"))
        done = await wait_until("migration", lambda: finished(client, "m"), 60)
        assert done["status"]["phase"] == "Succeeded", done["status"]
        vmi = await client.get("vmis", "arc", "default")
        assert vmi["status"]["nodeName"] == cluster.node_names[1]
        return dict(done["status"]["migrationState"])


def test_a_vm_gets_its_policy_settings_and_its_bandwidth_cap_holds(tmp_path: Path) -> None:
    state = asyncio.run(_policy(tmp_path))
    assert state["migrationPolicyName"] == "slow-lane"
    assert state["migrationConfiguration"]["bandwidthPerMigration"] == 16 * MiB
    assert state["migrationConfiguration"]["allowAutoConverge"] is True
    rate = state["dataProcessedBytes"] / state["durationSeconds"]
    assert 0.8 * 16 * MiB <= rate <= 1.1 * 16 * MiB, f"{rate / MiB:.1f} MiB/s"


async def _heavy(folder: Path) -> tuple[dict[str, Any], bool, int]:
    async with local_cluster(folder, nodes=2) as (cluster, client):
        await client.create(
            policy(
                "heavy",
                {"workload": "db"},
                allowPostCopy=True,
                bandwidthPerMigration="16Mi",
                completionTimeoutPerGiB=16,
            )
        )
        await start_vms_on(
            client,
            cluster.node_names[0],
            cluster.node_names,
            [vm("db", {"workload": "db"}, rate="64Mi", ws="16Mi")],
        )
        await client.create(migration("m", "db"))
        done = await wait_until("migration", lambda: finished(client, "m"), 60)
        target = cluster.agents[1]
        await wait_until("adoption", lambda: _adopted(target, "db"), 10)
        local = target.local[("default", "db")]
        check = await local.vm.check_memory()
        return done, await local.vm.is_running(), check.bad_pages


async def _adopted(agent: Any, name: str) -> bool:
    return ("default", name) in agent.local


def test_the_heavy_vm_switches_to_post_copy_and_completes(tmp_path: Path) -> None:
    done, running, bad = asyncio.run(_heavy(tmp_path))
    assert done["status"]["phase"] == "Succeeded"
    assert done["status"]["migrationState"]["mode"] == "PostCopy"
    assert running and bad == 0


async def _cancel(folder: Path) -> tuple[str, bool, int, int]:
    async with local_cluster(folder, nodes=2) as (cluster, client):
        await client.create(hco(bandwidthPerMigration="8Mi"))
        source, target = cluster.agents
        await start_vms_on(
            client, cluster.node_names[0], cluster.node_names, [vm("c", ws="64Mi", rate="1Mi")]
        )
        await client.create(migration("m", "c"))

        async def running() -> bool:
            m = await client.get("migrations", "m", "default")
            return (m.get("status") or {}).get("phase") == "Running"

        await wait_until("migration running", running, 30)
        await clock.sleep(0.5)
        await client.delete("migrations", "m", "default")  # = migrate-cancel
        await wait_until("source agent done", lambda: _idle(source), 20)
        vmi = await client.get("vmis", "c", "default")
        local = source.local[("default", "c")]
        check = await local.vm.check_memory()
        await wait_until("incoming VM stopped", lambda: _no_incoming(target), 10)
        return (
            vmi["status"]["nodeName"],
            await local.vm.is_running(),
            check.bad_pages,
            len(target.incoming),
        )


async def _idle(agent: Any) -> bool:
    return not agent.outgoing


async def _no_incoming(agent: Any) -> bool:
    return not agent.incoming


def test_a_cancel_leaves_the_vm_running_on_its_source(tmp_path: Path) -> None:
    node, running, bad, incoming = asyncio.run(_cancel(tmp_path))
    assert node == "node-1" and running and bad == 0 and incoming == 0


async def _controller_restart(folder: Path) -> tuple[list[dict[str, Any]], str]:
    async with local_cluster(folder, nodes=2) as (cluster, client):
        await client.create(hco(bandwidthPerMigration="16Mi"))
        await start_vms_on(client, cluster.node_names[0], cluster.node_names, [vm("r", ws="48Mi")])
        await client.create(migration("m", "r"))

        async def scheduled() -> bool:
            m = await client.get("migrations", "m", "default")
            return (m.get("status") or {}).get("phase") in (
                "Scheduled",
                "PreparingTarget",
                "TargetReady",
                "Running",
            )

        await wait_until("migration admitted", scheduled, 30)
        await cluster.stop_controller()
        await clock.sleep(1.0)
        cluster.start_controller()
        await wait_until("migration", lambda: finished(client, "m"), 60)
        migrations, _ = await client.list("migrations", "default")
        vmi = await client.get("vmis", "r", "default")
        return migrations, vmi["status"]["nodeName"]


def test_restarting_the_controller_mid_migration_ends_in_one_clean_outcome(
    tmp_path: Path,
) -> None:
    migrations, node = asyncio.run(_controller_restart(tmp_path))
    assert [m["status"]["phase"] for m in migrations] == ["Succeeded"]
    phases = [t["phase"] for t in migrations[0]["status"]["phaseTransitionTimestamps"]]
    assert phases.count("Running") == 1 and phases.count("Scheduled") == 1
    assert node == "node-2"


async def _agent_restart(folder: Path) -> tuple[int | None, int | None, bool, str]:
    async with local_cluster(folder, nodes=2) as (cluster, client):
        await start_vms_on(
            client, cluster.node_names[0], cluster.node_names, [vm("keep", rate="2Mi")]
        )
        old = cluster.agents[0]
        pid = old.local[("default", "keep")].vm.pid
        await cluster.stop_agent(old, stop_vms=False)
        new = cluster.start_agent("node-1")
        await wait_until("re-adoption", lambda: _adopted(new, "keep"), 20)
        again = new.local[("default", "keep")].vm
        alive = await again.is_running() and (await again.check_memory()).ok
        await client.create(migration("m", "keep"))  # and it is still under control
        done = await wait_until("migration", lambda: finished(client, "m"), 60)
        return pid, again.pid, alive, done["status"]["phase"]


def test_restarting_an_agent_keeps_its_vms_running(tmp_path: Path) -> None:
    before, after, alive, phase = asyncio.run(_agent_restart(tmp_path))
    assert before == after and alive and phase == "Succeeded"


async def _silent_node(folder: Path) -> tuple[dict[str, Any], str, bool, str]:
    async with local_cluster(folder, nodes=2, heartbeat_timeout=4.0) as (cluster, client):
        await client.create(hco(bandwidthPerMigration="4Mi"))
        await start_vms_on(client, cluster.node_names[0], cluster.node_names, [vm("s", ws="64Mi")])
        await client.create(migration("m", "s"))

        async def running() -> bool:
            m = await client.get("migrations", "m", "default")
            return (m.get("status") or {}).get("phase") == "Running"

        await wait_until("migration running", running, 30)
        await cluster.stop_agent(cluster.agents[1], stop_vms=False)  # node-2 goes silent
        done = await wait_until("migration", lambda: finished(client, "m"), 30)
        node = await client.get("nodes", "node-2")
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        vmi = await client.get("vmis", "s", "default")
        local = cluster.agents[0].local[("default", "s")]
        await wait_until("source agent done", lambda: _idle(cluster.agents[0]), 20)
        return done, ready["status"], await local.vm.is_running(), vmi["status"]["nodeName"]


def test_a_node_that_stops_reporting_fails_its_migrations(tmp_path: Path) -> None:
    done, ready, running, node = asyncio.run(_silent_node(tmp_path))
    assert done["status"]["phase"] == "Failed"
    assert "node node-2 stopped reporting" in done["status"]["migrationState"]["failureReason"]
    assert ready == "False"
    assert running and node == "node-1"  # the VM stays where it was
