"""No single object stops the cluster: with bad objects present, normal VMs still start and
migrate, and each bad object carries a condition (and an event) that says why."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from livemig.client import ApiClient

from .conftest import finished, local_cluster, migration, requires_qemu, vm, wait_until

pytestmark = requires_qemu

#: A valid DNS-1123 subdomain of 252 characters (the issue's example of a name that broke
#: the agent's folder path), and one of 240 (which broke the target's ``.incoming`` folder).
LONG_252 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 60])
LONG_240 = ".".join(["e" * 63, "f" * 63, "g" * 63, "h" * 48])


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions", [])}


async def vmi(client: ApiClient, name: str) -> dict[str, Any]:
    return await client.get("VirtualMachineInstance", name, "default")


async def running(client: ApiClient, name: str) -> bool:
    try:
        return (await vmi(client, name)).get("status", {}).get("phase") == "Running"
    except Exception:
        return False


async def condition_says(client: ApiClient, name: str, kind: str, *words: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        try:
            c = conditions(await vmi(client, name)).get(kind)
        except Exception:
            return None
        if c and c["status"] == "False" and all(w in c["message"] for w in words):
            return c
        return None

    found: dict[str, Any] = await wait_until(f"{name}: {kind} says {words}", check, 30)
    return found


async def scenario(folder: Path) -> None:
    async with local_cluster(folder, nodes=2) as (_cluster, client):
        # The document's 6Gi VM on 2Gi nodes, and one whose nodeSelector no node has.
        await client.create(vm("huge", memory="6Gi"))
        picky = vm("picky")
        picky["spec"]["template"]["spec"]["nodeSelector"] = {"disktype": "ssd"}
        await client.create(picky)
        escape = vm("escape")
        escape["spec"]["template"]["spec"]["volumes"] = [
            {"name": "root", "hostDisk": {"path": "/etc/passwd", "type": "Disk"}}
        ]
        await client.create(escape)
        await client.create(vm(LONG_252))
        await client.create(vm(LONG_240))
        await client.create(vm("tuned", rate="1Mi"))
        await client.create(vm("normal"))

        huge = await condition_says(client, "huge", "Scheduled", "needs 6Gi", "node-1 has")
        assert huge["reason"] == "Unschedulable"
        assert "free" in huge["message"] and "bytes" not in huge["message"]
        await condition_says(client, "picky", "Scheduled", "lacks label disktype=ssd")
        refused = await condition_says(
            client,
            "escape",
            "Synchronized",
            "volume root: hostDisk path /etc/passwd",
            f"outside the allowed root {(folder / 'disks').resolve()}",
        )
        assert refused["reason"] == "StartFailed"
        for name in ("normal", "tuned", LONG_252, LONG_240):
            await wait_until(f"{name[:20]} runs", lambda n=name: running(client, n), 60)

        # A bad edit of the test guest's load: the running VM says why, nothing else stops.
        def bad_rate(o: dict[str, Any]) -> dict[str, Any]:
            o["spec"]["template"]["metadata"]["annotations"]["livemig.io/dirty-rate"] = "abc"
            return o

        await client.modify("VirtualMachine", "tuned", "default", bad_rate)
        tuned = await condition_says(
            client, "tuned", "Synchronized", "livemig.io/dirty-rate", "'abc' is not a quantity"
        )
        assert tuned["reason"] == "RetuneFailed"

        # With all of that present, migrations still go through — long names included.
        for name, target in (("m-normal", "normal"), ("m-long", LONG_240), ("m-252", LONG_252)):
            await client.create(migration(name, target))
        for name in ("m-normal", "m-long", "m-252"):
            done = await wait_until(name, lambda n=name: finished(client, n), 60)
            assert done["status"]["phase"] == "Succeeded", done["status"]
        assert await running(client, "normal")

        # The unschedulable VMI's event is there for `livemig get events`.
        events, _ = await client.list("Event", "default")
        reasons = {(e["involvedObject"]["name"], e["reason"]) for e in events}
        assert ("huge", "Unschedulable") in reasons
        # Its message changed as other VMs took memory; still one Event, counted, latest words.
        (huge_event,) = [e for e in events if e["involvedObject"]["name"] == "huge"]
        assert huge_event["message"].startswith("no node fits: needs 6Gi")
        assert ("tuned", "RetuneFailed") in reasons

        # Fixing the annotation clears the condition.
        def good_rate(o: dict[str, Any]) -> dict[str, Any]:
            o["spec"]["template"]["metadata"]["annotations"]["livemig.io/dirty-rate"] = "2Mi"
            return o

        await client.modify("VirtualMachine", "tuned", "default", good_rate)

        async def cleared() -> bool:
            return "Synchronized" not in conditions(await vmi(client, "tuned"))

        await wait_until("the condition clears", cleared, 30)


def test_bad_objects_never_stop_the_cluster(tmp_path: Path) -> None:
    asyncio.run(scenario(tmp_path))


async def objects_from_before_the_door(folder: Path) -> None:
    """Objects an older livemig let in (its store is kept across upgrades): a lone surrogate,
    a 900-deep spec and a quantity typo. They sit in the store; the cluster works around them."""
    async with local_cluster(folder, nodes=2) as (cluster, client):
        assert cluster.store is not None
        surrogate = vm("surrogate")
        surrogate["spec"]["template"]["metadata"]["annotations"]["note"] = "bad \ud800 text"
        deep: Any = "end"
        for _ in range(900):
            deep = {"x": deep}
        deep_vmi = vm("deep")["spec"]["template"]
        bad_policy = {
            "apiVersion": "migrations.kubevirt.io/v1alpha1",
            "kind": "MigrationPolicy",
            "metadata": {"name": "typo"},
            "spec": {"selectors": {}, "bandwidthPerMigration": "64Mb"},
        }
        for obj in (
            surrogate,
            {
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachineInstance",
                "metadata": {"name": "deep", "namespace": "default"},
                "spec": {**deep_vmi["spec"], "deep": deep},
            },
            bad_policy,
        ):
            cluster.store.create(obj)  # straight into the store, as an old version did

        await client.create(vm("normal"))
        await wait_until("normal runs", lambda: running(client, "normal"), 60)
        await client.create(migration("m-normal", "normal"))
        done = await wait_until("m-normal", lambda: finished(client, "m-normal"), 60)
        assert done["status"]["phase"] == "Succeeded", done["status"]

        async def warned() -> set[tuple[str, str]]:
            events, _ = await client.list("Event")
            return {(e["involvedObject"]["name"], e["reason"]) for e in events}

        async def all_warned() -> bool:
            seen = await warned()
            return {
                ("surrogate", "FailedCreate"),
                ("typo", "InvalidObject"),
                ("deep", "PlacementFailed"),
            } <= seen

        await wait_until("a warning for each bad object", all_warned, 30)


def test_objects_that_predate_the_input_limits_do_not_stop_the_cluster(tmp_path: Path) -> None:
    asyncio.run(objects_from_before_the_door(tmp_path))
