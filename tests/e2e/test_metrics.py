"""/metrics scraped from a real cluster during and after migrations, checked against the
migrations' own status (HTTP API, SQLite, controller, agents, QEMU)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from livemig.api.lifecycle import MigrationStatus, Phase
from livemig.api.status import parse_timestamp
from livemig.client import ApiClient

from .conftest import hco, local_cluster, migration, requires_qemu, start_vms_on, vm, wait_until
from .test_drain import cli

pytestmark = requires_qemu
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(url: str, token: str) -> Samples:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"})
    r.raise_for_status()
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, metric: str, **labels: str) -> float | None:
    return samples.get((metric, tuple(sorted(labels.items()))))


async def status_of(client: ApiClient, name: str) -> dict[str, Any]:
    return await client.get("VirtualMachineInstanceMigration", name, "default")


async def _scraped(folder: Path) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    async with local_cluster(folder, nodes=2) as (cluster, client):
        first, _ = nodes = cluster.node_names
        url, token = cluster.url, cluster.token
        await client.create(hco(parallelOutboundMigrationsPerNode=1, bandwidthPerMigration="12Mi"))
        pinned = vm("pinned")
        pinned["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": first}
        await start_vms_on(client, first, nodes, [vm("a", ws="64Mi"), vm("b", ws="64Mi"), pinned])
        async with httpx.AsyncClient() as http:
            seen["unauthorized"] = (await http.get(f"{url}/metrics")).status_code
        await client.create(migration("m-a", "a"))
        await asyncio.sleep(0.3)  # b is created later: it waits behind a (one per node)
        await client.create(migration("m-b", "b"))

        async def a_running_with_figures() -> bool:
            st = MigrationStatus.of(await status_of(client, "m-a"))
            return st.phase is Phase.RUNNING and st.figures is not None and st.figures.total > 0

        await wait_until("m-a moving memory", a_running_with_figures, 30)
        # A scrape between two reads of the same revision must show exactly that revision.
        for _ in range(50):
            before = await status_of(client, "m-a")
            samples = await scrape(url, token)
            after = await status_of(client, "m-a")
            same = before["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]
            if same and MigrationStatus.of(after).phase is Phase.RUNNING:
                seen["during"] = (samples, after, await status_of(client, "m-b"))
                break
        seen["drain_started"] = await cli(folder, "drain", first)

        async def both_done() -> list[dict[str, Any]] | None:
            ms = [await status_of(client, n) for n in ("m-a", "m-b")]
            return ms if all(MigrationStatus.of(m).finished for m in ms) else None

        seen["done"] = await wait_until("both migrations", both_done, 90)

        async def drain_blocked() -> Samples | None:
            s = await scrape(url, token)
            blocked = value(s, "livemig_node_drain_blocked_vmis", node=first)
            left = value(s, "livemig_node_drain_vmis", node=first, state="left")
            return s if blocked == 1 and left == 1 else None

        seen["after"] = await wait_until("the drain blocked on the pinned VM", drain_blocked, 30)
    return seen


def test_metrics_match_the_migrations_status(tmp_path: Path) -> None:
    seen = asyncio.run(_scraped(tmp_path))
    assert seen["unauthorized"] == 401

    samples, a, b = seen["during"]
    fig = a["status"]["migrationState"]
    vmi_a = {"name": "a", "namespace": "default", "node": "node-1"}
    assert value(samples, "kubevirt_vmi_migration_data_processed_bytes", **vmi_a) == float(
        fig["dataProcessedBytes"]
    )
    assert value(samples, "kubevirt_vmi_migration_data_remaining_bytes", **vmi_a) == float(
        fig["dataRemainingBytes"]
    )
    assert value(samples, "kubevirt_vmi_migration_memory_transfer_rate_bytes", **vmi_a) == float(
        fig["transferRateBytesPerSecond"]
    )
    assert value(samples, "kubevirt_vmi_migrations_in_running_phase") == 1
    assert MigrationStatus.of(b).phase is Phase.PENDING
    assert value(samples, "kubevirt_vmi_migrations_in_pending_phase") == 1
    assert value(samples, "livemig_migrations_pending", reason="node-limit") == 1
    assert value(samples, "livemig_migrations_pending", reason="cluster-limit") == 0
    pinned = {"name": "pinned", "namespace": "default", "node": "node-1"}
    assert value(samples, "kubevirt_vmi_non_evictable", **pinned) == 1
    assert (
        value(samples, "kubevirt_vmi_non_evictable", name="b", namespace="default", node="node-1")
        == 0
    )

    code, _, err = seen["drain_started"]
    assert code == 0, err

    after = seen["after"]
    for m in seen["done"]:
        st = MigrationStatus.of(m)
        assert st.succeeded, st.reason
        labels = {"name": m["spec"]["vmiName"], "namespace": "default", "node": "node-1"}
        assert value(after, "kubevirt_vmi_migration_succeeded", **labels) == 1
        assert value(after, "kubevirt_vmi_migration_failed", **labels) == 0
        assert st.started and st.ended
        assert value(after, "kubevirt_vmi_migration_start_time_seconds", **labels) == (
            parse_timestamp(st.started).timestamp()
        )
        assert value(after, "kubevirt_vmi_migration_end_time_seconds", **labels) == (
            parse_timestamp(st.ended).timestamp()
        )
        assert st.figures is not None
        assert value(after, "kubevirt_vmi_migration_data_bytes_total", **labels) == st.figures.total
    histogram = "kubevirt_vmi_migration_phase_transition_time_from_creation_seconds_count"
    assert value(after, histogram, phase="Succeeded") == 2
    assert value(after, histogram, phase="Running") == 2
    assert value(after, "livemig_migration_admission_wait_seconds_count") == 2
    # m-b waited behind m-a for about m-a's whole run.
    a_st = MigrationStatus.of(seen["done"][0])
    waited = value(after, "livemig_migration_admission_wait_seconds_sum")
    assert waited is not None and waited >= (a_st.duration or 0) * 0.8
    assert value(after, "livemig_node_draining", node="node-1") == 1
    assert value(after, "livemig_node_draining", node="node-2") == 0
