"""The CLI as a kubectl user drives it, against a real cluster (HTTP API, SQLite, controller,
agents, QEMU): names across namespaces, selectors, output formats, watch rows, describe with
events, and migrate's --target-node and --wait."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

from .conftest import (
    hco,
    local_cluster,
    policy,
    requires_qemu,
    settled_exactly_once,
    start_vms_on,
    vm,
)
from .test_drain import LIVEMIG, cli

pytestmark = requires_qemu


def in_namespace(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    obj["metadata"]["namespace"] = namespace
    return obj


async def _habits(folder: Path) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    async with local_cluster(folder, nodes=2) as (cluster, client):
        first, second = nodes = cluster.node_names
        await client.create(
            hco(allowPostCopy=True, completionTimeoutPerGiB=16, bandwidthPerMigration="16Mi")
        )
        await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "db"}})
        vms = [
            vm("web-1", labels={"tier": "web"}),
            vm("web-2", labels={"tier": "cache"}),
            in_namespace(vm("pg", labels={"tier": "db"}), "db"),
            in_namespace(vm("web-1", labels={"tier": "db"}), "db"),  # same name, other ns
        ]
        await start_vms_on(client, first, nodes, vms)

        seen["default_only"] = await cli(folder, "get", "vmi")
        seen["all"] = await cli(folder, "get", "vmis", "-A")
        seen["unique"] = await cli(folder, "get", "virtualmachineinstances", "pg", "-o", "json")
        seen["ambiguous"] = await cli(folder, "get", "vmi", "web-1")
        seen["slash"] = await cli(folder, "get", "vmi/web-1", "vmi/web-2", "-n", "default")
        seen["set_based"] = await cli(
            folder, "get", "vmis", "-A", "-l", "tier in (web,db)", "-o", "name"
        )
        seen["bad_selector"] = await cli(folder, "get", "vmis", "-l", "tier in web,db")
        seen["one_item_list"] = await cli(
            folder, "get", "vmis", "-n", "default", "-l", "tier=web", "-o", "json"
        )
        seen["jsonpath"] = await cli(
            folder,
            "get",
            "vmis",
            "-A",
            "-o",
            "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}"
            '@{.status.nodeName}{"\\n"}{end}',
        )
        seen["empty"] = await cli(folder, "get", "vmim", "-n", "db")
        seen["wide"] = await cli(folder, "get", "vmi", "-o", "wide")

        # A watch of migrations in its own process, while we migrate and delete.
        watch = await asyncio.create_subprocess_exec(
            LIVEMIG,
            "get",
            "vmim",
            "-A",
            "-w",
            env={**os.environ, "LIVEMIG_STATE": str(folder)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        await asyncio.sleep(1.0)
        seen["to_second"] = await cli(folder, "migrate", "web-2", "--target-node", second, "--wait")
        # Back to back: the second request comes while the first hands over; it must start
        # from where the VM is, not from the copy it left behind.
        seen["again"] = await cli(folder, "migrate", "web-2", "--wait")
        seen["placement_web2"] = (await client.get("VirtualMachineInstance", "web-2", "default"))[
            "status"
        ]["nodeName"]
        await settled_exactly_once(client, folder, ["web-1", "web-2"])
        migrations, _ = await client.list("VirtualMachineInstanceMigration", "default")
        for m in migrations:
            await client.delete("VirtualMachineInstanceMigration", m["metadata"]["name"], "default")
        await asyncio.sleep(1.0)
        watch.send_signal(signal.SIGINT)
        out, _ = await watch.communicate()
        seen["watch"] = out.decode()

        # A heavy VM under allowPostCopy: --wait says when and why it switched.
        await client.create(policy("heavy", {"workload": "heavy"}, completionTimeoutPerGiB=8))
        await start_vms_on(
            client, second, nodes, [vm("heavy", {"workload": "heavy"}, rate="64Mi", ws="96Mi")]
        )
        seen["heavy"] = await cli(folder, "migrate", "heavy", "--wait")
        seen["describe"] = await cli(folder, "describe", "vmi", "heavy")
        heavy_migration = next(
            m["metadata"]["name"]
            for m in (await client.list("VirtualMachineInstanceMigration", "default"))[0]
            if m["spec"]["vmiName"] == "heavy"
        )
        seen["describe_migration"] = await cli(folder, "describe", "vmim", heavy_migration)
        seen["events"] = await cli(folder, "get", "events", "-A", "-o", "wide")
        # The VMIs carry their VM's template labels; their VMs start them again.
        seen["delete_selected"] = await cli(folder, "delete", "vmi", "-n", "db", "-l", "tier=db")
    return seen


def test_the_cli_behaves_as_a_kubectl_user_expects(tmp_path: Path) -> None:
    seen = asyncio.run(_habits(tmp_path))

    code, out, _ = seen["default_only"]
    assert code == 0
    assert out.split("\n")[0].split() == ["NAME", "AGE", "PHASE", "NODENAME", "READY"]
    assert "pg" not in out and "web-1" in out  # namespace default only

    code, out, _ = seen["all"]
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert sum(" pg " in f" {line} " for line in lines) == 1 and len(lines) == 5

    code, out, _ = seen["unique"]
    assert code == 0 and json.loads(out)["metadata"]["namespace"] == "db"

    code, _, err = seen["ambiguous"]
    assert code == 1 and "exists in namespaces db, default: pick one with -n" in err

    code, out, _ = seen["slash"]
    assert code == 0 and "web-1" in out and "web-2" in out

    code, out, _ = seen["set_based"]
    assert sorted(out.split()) == [
        "virtualmachineinstance.kubevirt.io/pg",
        "virtualmachineinstance.kubevirt.io/web-1",
        "virtualmachineinstance.kubevirt.io/web-1",
    ]
    code, _, err = seen["bad_selector"]
    assert code == 1 and "cannot read 'tier in web'" in err

    code, out, _ = seen["one_item_list"]
    listed = json.loads(out)
    assert listed["kind"] == "List" and [i["metadata"]["name"] for i in listed["items"]] == [
        "web-1"
    ]

    code, out, _ = seen["jsonpath"]
    assert sorted(out.split()) == [
        "db/pg@node-1",
        "db/web-1@node-1",
        "default/web-1@node-1",
        "default/web-2@node-1",
    ]

    code, out, err = seen["empty"]
    assert code == 0 and out == "" and "No resources found in db namespace." in err

    code, out, _ = seen["wide"]
    header = out.splitlines()[0].split()
    assert header[-4:] == ["ADDRESS", "LIVE-MIGRATABLE", "MEMORY", "PROBLEM"]
    assert "128Mi" in out

    code, out, err = seen["to_second"]
    assert code == 0, out + err
    code, out, err = seen["again"]
    assert code == 0, out + err
    assert seen["placement_web2"] == "node-1"  # node-2, then back

    watch = seen["watch"].splitlines()
    header = watch[0]
    assert header.split()[:3] == ["NAMESPACE", "NAME", "PHASE"]
    # Every row lines up under the header: the PHASE column starts where its title does.
    at = header.index("PHASE")
    rows = [line for line in watch[1:] if line.strip()]
    assert rows and all(line[at - 1] == " " and line[at] != " " for line in rows)
    assert any("(deleted)" in line for line in rows)
    assert any(" Succeeded " in line for line in rows)

    code, out, err = seen["heavy"]
    assert code == 0, out + err
    assert "SwitchedToPostCopy: completion timeout 1 s passed at" in out
    assert "switched to post-copy" in out

    code, out, _ = seen["describe"]
    assert "Memory:" in out and "128Mi" in out
    assert "Events:" in out and "Migrating" in out and "SwitchedToPostCopy" in out
    code, out, _ = seen["describe_migration"]
    assert "Policy:         heavy" in out
    assert "Mode:           PostCopy" in out
    assert "Phases:" in out and "Succeeded" in out
    assert "SuccessfulMigration" in out

    code, out, _ = seen["events"]
    for reason in (
        "SuccessfulCreate",
        "PreparingTarget",
        "SuccessfulHandOver",
        "Migrating",
        "SwitchedToPostCopy",
        "SuccessfulMigration",
        "Migrated",
    ):
        assert f" {reason} " in out, reason

    code, out, _ = seen["delete_selected"]
    assert code == 0 and sorted(out.splitlines()) == [
        "virtualmachineinstance.kubevirt.io/pg deleted (namespace db)",
        "virtualmachineinstance.kubevirt.io/web-1 deleted (namespace db)",
    ]
