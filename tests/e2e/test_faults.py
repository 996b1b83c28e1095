"""Faults with real QEMU processes, in one test cluster: a VM's QEMU killed outside and during a
migration, the target's QEMU killed in pre-copy and in post-copy, the source agent restarted
mid-migration. Each ends exactly once: every VM runs in one managed QEMU that its VMI names,
and every migration has an honest final phase and reason."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from livemig.api.lifecycle import MigrationStatus, Phase
from livemig.api.vmi_status import VMIPhase, VMIStatus
from livemig.client import ApiClient
from livemig.cluster import LocalCluster
from livemig.errors import NotFound
from livemig.hypervisor import VM, TransferStatus
from livemig.migration import LINK_DOWN, POSTCOPY_LOST

from .conftest import (
    clock,
    finished,
    hco,
    local_cluster,
    migration,
    policy,
    requires_qemu,
    settled_exactly_once,
    start_vms_on,
    vm,
    wait_until,
)

pytestmark = requires_qemu


async def phase_is(client: ApiClient, name: str, *phases: Phase) -> bool:
    return MigrationStatus.of(await client.get("migrations", name, "default")).phase in phases


async def moving(client: ApiClient, name: str) -> bool:
    """Running, with bytes on the wire."""
    st = MigrationStatus.of(await client.get("migrations", name, "default"))
    return st.phase is Phase.RUNNING and st.figures is not None and st.figures.processed > 0


async def in_post_copy_on_node_2(cluster: LocalCluster, client: ApiClient) -> VM:
    """Start VM "db" (a heavy writer) on node-1, migrate it ("m") until it is in post-copy and
    its guest runs on node-2; the incoming VM there."""
    await start_vms_on(
        client, "node-1", cluster.node_names, [vm("db", {"workload": "db"}, rate="16Mi")]
    )
    await client.create(migration("m", "db"))

    async def in_post_copy() -> bool:
        st = MigrationStatus.of(await client.get("migrations", "m", "default"))
        return st.in_post_copy and st.phase is Phase.RUNNING

    await wait_until("post-copy", in_post_copy, 30)
    (incoming,) = cluster.agents[1].incoming.values()
    await wait_until("the guest running on the target", lambda: runs_there(incoming.vm), 30)
    return incoming.vm


async def runs_there(vm: VM) -> bool:
    """The migration is in post-copy and the guest runs on this (target) VM."""
    sample = await vm.stats()
    return sample.status.in_postcopy and await vm.run_state() == "running"


async def vmi_pid(client: ApiClient, name: str) -> int | None:
    try:
        vmi = await client.get("vmis", name, "default")
    except NotFound:
        return None  # between a failed VMI and its restart
    if VMIStatus.of(vmi).phase is not VMIPhase.RUNNING:
        return None
    ready = next(c for c in vmi["status"]["conditions"] if c["type"] == "Ready")
    return int(ready["message"].split()[2])


async def _vm_qemu_killed(folder: Path) -> tuple[int, int, list[str]]:
    async with local_cluster(folder, nodes=2) as (cluster, client):
        await start_vms_on(client, "node-1", cluster.node_names, [vm("k", rate="1Mi")])
        before = await vmi_pid(client, "k")
        assert before is not None
        os.kill(before, signal.SIGKILL)

        async def restarted() -> int | None:
            pid = await vmi_pid(client, "k")
            return pid if pid not in (None, before) else None

        after = await wait_until("the VM started again", restarted, 60)
        await settled_exactly_once(client, folder, ["k"])

        async def both_said() -> list[str] | None:
            # The agent records its event a moment after the VMI's status, which the
            # controller may act on first.
            events, _ = await client.list("Event", "default")
            reasons = [e["reason"] for e in events]
            return reasons if {"Failed", "Restarting"} <= set(reasons) else None

        return before, after, await wait_until("the Failed and Restarting events", both_said, 10)


def test_a_killed_vm_qemu_fails_its_vmi_and_run_strategy_always_starts_it_again(
    tmp_path: Path,
) -> None:
    before, after, reasons = asyncio.run(_vm_qemu_killed(tmp_path))
    assert after != before
    assert "Failed" in reasons and "Restarting" in reasons  # said on the VMI and on the VM


async def _source_killed(folder: Path) -> tuple[MigrationStatus, int, int]:
    async with local_cluster(folder, nodes=2) as (cluster, client):
        await client.create(hco(bandwidthPerMigration="8Mi"))
        await start_vms_on(client, "node-1", cluster.node_names, [vm("s", ws="64Mi", rate="1Mi")])
        before = await vmi_pid(client, "s")
        assert before is not None
        await client.create(migration("m", "s"))
        await wait_until("bytes moving", lambda: moving(client, "m"), 30)
        os.kill(before, signal.SIGKILL)
        done = await wait_until("migration", lambda: finished(client, "m"), 30)
        await settled_exactly_once(client, folder, ["s"])
        after = await vmi_pid(client, "s")
        assert after is not None
        return MigrationStatus.of(done), before, after


def test_the_source_qemu_killed_mid_migration_fails_it_in_words_and_the_vm_restarts(
    tmp_path: Path,
) -> None:
    done, before, after = asyncio.run(_source_killed(tmp_path))
    assert done.phase is Phase.FAILED
    assert done.reason == "the source QEMU of default_s exited during the migration"
    assert done.figures is not None and done.figures.processed > 0  # its last figures stay
    assert after != before


async def _target_killed_in_precopy(folder: Path) -> tuple[MigrationStatus, str, str]:
    async with local_cluster(folder, nodes=2) as (cluster, client):
        await client.create(hco(bandwidthPerMigration="8Mi"))
        await start_vms_on(client, "node-1", cluster.node_names, [vm("t", ws="64Mi", rate="1Mi")])
        await client.create(migration("m1", "t"))
        await wait_until("bytes moving", lambda: moving(client, "m1"), 30)
        target = cluster.agents[1]
        (incoming,) = target.incoming.values()
        assert incoming.vm.pid is not None
        os.kill(incoming.vm.pid, signal.SIGKILL)
        done = await wait_until("migration", lambda: finished(client, "m1"), 30)
        await settled_exactly_once(client, folder, ["t"])
        stayed = VMIStatus.of(await client.get("vmis", "t", "default")).node or ""
        await client.create(migration("m2", "t"))  # a retry, once the node is fine again
        again = await wait_until("retry", lambda: finished(client, "m2"), 60)
        await settled_exactly_once(client, folder, ["t"])
        return MigrationStatus.of(done), stayed, MigrationStatus.of(again).phase.value


def test_the_target_qemu_killed_in_pre_copy_fails_it_the_vm_stays_and_a_retry_works(
    tmp_path: Path,
) -> None:
    done, stayed, retry = asyncio.run(_target_killed_in_precopy(tmp_path))
    assert done.phase is Phase.FAILED
    assert done.reason is not None and "the VM runs on the source" in done.reason
    assert stayed == "node-1"
    assert retry == "Succeeded"


async def _target_lost_in_post_copy(folder: Path) -> tuple[MigrationStatus, str | None, int]:
    # A give-up time longer than the test waits: the target agent's word that its QEMU died
    # must end it, not the timer.
    async with local_cluster(folder, nodes=2, postcopy_give_up=600.0) as (cluster, client):
        await client.create(
            policy(
                "heavy",
                {"workload": "db"},
                allowPostCopy=True,
                allowWorkloadDisruption=True,
                bandwidthPerMigration="2Mi",  # post-copy's background push too: it lasts
                completionTimeoutPerGiB=8,  # 1 s for 128 Mi
            )
        )
        incoming = await in_post_copy_on_node_2(cluster, client)
        before = cluster.agents[0].local[("default", "db")].vm.pid  # the source's half
        assert incoming.pid is not None
        os.kill(incoming.pid, signal.SIGKILL)
        done = await wait_until("migration", lambda: finished(client, "m"), 30)

        async def vmi_failed_event() -> str | None:
            # Written just after the migration's outcome (which frees its slot first).
            events, _ = await client.list("Event", "default")
            for e in events:
                if e["reason"] == "Failed" and e["involvedObject"]["name"] == "db":
                    return str(e["message"])
            return None

        vmi_failed_reason = await wait_until("the VMI's Failed event", vmi_failed_event, 30)
        # The split guest is not saved; runStrategy Always boots the VM afresh, once.
        await settled_exactly_once(client, folder, ["db"])
        after = await vmi_pid(client, "db")
        assert after is not None and after != before
        return MigrationStatus.of(done), vmi_failed_reason, len(cluster.agents[0].local)


def test_the_target_lost_in_post_copy_is_said_and_the_split_source_stopped(
    tmp_path: Path,
) -> None:
    done, vmi_reason, _ = asyncio.run(_target_lost_in_post_copy(tmp_path))
    assert done.phase is Phase.FAILED and done.reason == POSTCOPY_LOST
    assert vmi_reason == POSTCOPY_LOST


async def _source_agent_restarted(folder: Path, pause: float) -> tuple[MigrationStatus, str]:
    async with local_cluster(folder, nodes=2) as (cluster, client):
        await client.create(hco(bandwidthPerMigration="16Mi"))
        await start_vms_on(client, "node-1", cluster.node_names, [vm("r", ws="64Mi", rate="1Mi")])
        await client.create(migration("m", "r"))
        await wait_until("bytes moving", lambda: moving(client, "m"), 30)
        await cluster.stop_agent(cluster.agents[0], stop_vms=False)  # its QEMUs run on
        await clock.sleep(pause)
        cluster.start_agent("node-1")
        done = await wait_until("migration", lambda: finished(client, "m"), 60)
        await settled_exactly_once(client, folder, ["r"])
        return MigrationStatus.of(done), VMIStatus.of(
            await client.get("vmis", "r", "default")
        ).node or ""


async def _target_agent_restarted(folder: Path) -> tuple[MigrationStatus, str]:
    async with local_cluster(folder, nodes=2) as (cluster, client):
        await client.create(hco(bandwidthPerMigration="16Mi"))
        await start_vms_on(client, "node-1", cluster.node_names, [vm("g", ws="64Mi", rate="1Mi")])
        await client.create(migration("m", "g"))
        await wait_until("bytes moving", lambda: moving(client, "m"), 30)
        await cluster.stop_agent(cluster.agents[1], stop_vms=False)  # the incoming QEMU runs on
        await clock.sleep(1.0)
        cluster.start_agent("node-2")
        done = await wait_until("migration", lambda: finished(client, "m"), 60)
        await settled_exactly_once(client, folder, ["g"])
        vmi = await client.get("vmis", "g", "default")
        return MigrationStatus.of(done), VMIStatus.of(vmi).node or ""


def test_a_target_agent_restarted_mid_migration_finds_its_incoming_qemu(tmp_path: Path) -> None:
    done, node = asyncio.run(_target_agent_restarted(tmp_path))
    assert done.phase is Phase.SUCCEEDED and node == "node-2"


def test_a_source_agent_restarted_mid_migration_takes_it_over_from_qemu(tmp_path: Path) -> None:
    done, node = asyncio.run(_source_agent_restarted(tmp_path, 0.3))
    assert done.phase is Phase.SUCCEEDED and node == "node-2"


def test_a_source_agent_back_after_qemu_finished_completes_the_hand_over(tmp_path: Path) -> None:
    # 64 Mi at 16 Mi/s: QEMU is done well within the 8 s the agent is away.
    done, node = asyncio.run(_source_agent_restarted(tmp_path, 8.0))
    assert done.phase is Phase.SUCCEEDED and node == "node-2"


def tcp_ports_of(pid: int) -> set[str]:
    """The local ports of ``pid``'s established TCP connections (its migration streams: QMP
    and the console are unix sockets)."""
    listed = subprocess.run(
        ["ss", "-tnpH", "state", "established"], capture_output=True, text=True, check=True
    ).stdout
    return {
        line.split()[2].rsplit(":", 1)[1] for line in listed.splitlines() if f"pid={pid}," in line
    }


async def cut_link(pid: int) -> int:
    """Break the migration link of the target QEMU ``pid``: its TCP connections are destroyed
    (``ss -K``), which resets both ends, as a broken link or a restarted router does."""
    cuts = 0
    for port in await asyncio.to_thread(tcp_ports_of, pid):
        await asyncio.to_thread(
            subprocess.run, ["ss", "-K", "sport", "=", port], capture_output=True, check=False
        )
        cuts += 1
    return cuts


async def _link_cut_in_post_copy(folder: Path) -> tuple[MigrationStatus, int, list[str]]:
    async with local_cluster(folder, nodes=2, postcopy_give_up=60.0) as (cluster, client):
        await client.create(
            policy(
                "heavy",
                {"workload": "db"},
                allowPostCopy=True,
                allowWorkloadDisruption=True,
                bandwidthPerMigration="1Mi",  # post-copy's background push lasts ~1.5 min
                completionTimeoutPerGiB=8,
            )
        )
        incoming = await in_post_copy_on_node_2(cluster, client)
        assert incoming.pid is not None
        source = cluster.agents[0].local[("default", "db")].vm
        for round_ in (1, 2):  # the link breaks, comes back, and breaks again

            async def broken() -> bool:
                # Cut until a side says the link is down: a connection QEMU had already left
                # may be the one cut.
                await cut_link(incoming.pid)
                await clock.sleep(0.3)
                sides = [await source.stats(), await incoming.stats()]
                return any(x.status in LINK_DOWN for x in sides)

            await wait_until(f"the link broken ({round_})", broken, 20)

            async def recovered(n: int = round_) -> bool:
                st = MigrationStatus.of(await client.get("migrations", "m", "default"))
                if st.finished:
                    return True
                sides = [await source.stats(), await incoming.stats()]
                active = all(x.status is TransferStatus.POSTCOPY_ACTIVE for x in sides)
                return st.recoveries >= n and active

            await wait_until(f"recovery {round_}", recovered, 30)
            await clock.sleep(1.0)  # pages flow again for a while
        done = await wait_until("migration", lambda: finished(client, "m"), 90)
        await settled_exactly_once(client, folder, ["db"])
        local = cluster.agents[1].local[("default", "db")]
        bad = (await local.vm.check_memory()).bad_pages
        events, _ = await client.list("Event", "default")
        return MigrationStatus.of(done), bad, [e["reason"] for e in events]


@pytest.mark.skipif(os.geteuid() != 0, reason="ss -K (cutting a TCP link) needs root")
def test_a_post_copy_link_that_breaks_twice_is_recovered_with_no_page_lost(tmp_path: Path) -> None:
    done, bad, reasons = asyncio.run(_link_cut_in_post_copy(tmp_path))
    assert done.phase is Phase.SUCCEEDED, done.reason
    assert done.recoveries >= 2
    assert bad == 0
    assert "PostCopyPaused" in reasons and "PostCopyResumed" in reasons


async def _forgotten_qemu(folder: Path) -> tuple[int, int | None]:
    async with local_cluster(folder, nodes=2) as (cluster, client):
        await start_vms_on(client, "node-1", cluster.node_names, [vm("f")])
        before = await vmi_pid(client, "f")
        assert before is not None
        await cluster.stop_agent(cluster.agents[0], stop_vms=False)
        book = folder / "nodes" / "node-1" / "vms.json"
        data = json.loads(book.read_text())
        data["local"].clear()  # as if the agent died before recording the QEMU it started
        book.write_text(json.dumps(data))
        cluster.start_agent("node-1")

        async def restarted() -> int | None:
            pid = await vmi_pid(client, "f")
            return pid if pid not in (None, before) else None

        after = await wait_until("the VM started again", restarted, 60)
        await settled_exactly_once(client, folder, ["f"])  # the forgotten QEMU is gone
        return before, after


def test_a_qemu_no_ledger_knows_is_stopped_and_the_vm_runs_once(tmp_path: Path) -> None:
    before, after = asyncio.run(_forgotten_qemu(tmp_path))
    assert after is not None and after != before
    assert not Path(f"/proc/{before}").exists()
