"""`livemig demo`: a 3-node cluster, the document's settings, six VMs, one node drained."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from livemig import isolation
from livemig.api.loading import LoadResult, load_text
from livemig.api.models import to_dict
from livemig.api.quantity import human_bytes
from livemig.api.vmi_status import VMIPhase, VMIStatus
from livemig.client import ApiClient
from livemig.clock import RealClock
from livemig.cluster import LocalCluster
from livemig.errors import LivemigError

from .cluster_cmds import err, out, require_qemu, run_async
from .node_cmds import drain_summary, follow_drain, set_node

NAMESPACE = "default"
DRAINED = "node-1"
clock = RealClock()

SETTINGS = """
# The cluster settings of the document's 9.2.1, with two policies in the spirit of 9.2.2 and
# 9.2.4: heavy database VMs may switch to post-copy; web VMs get more bandwidth.
apiVersion: hco.kubevirt.io/v1beta1
kind: HyperConverged
metadata: {name: kubevirt-hyperconverged, namespace: openshift-cnv}
spec:
  liveMigrationConfig:
    bandwidthPerMigration: 64Mi
    completionTimeoutPerGiB: 800
    parallelMigrationsPerCluster: 5
    parallelOutboundMigrationsPerNode: 2
    progressTimeout: 150
    allowPostCopy: false
---
apiVersion: migrations.kubevirt.io/v1alpha1
kind: MigrationPolicy
metadata: {name: heavy-workloads}
spec:
  allowPostCopy: true
  bandwidthPerMigration: 32Mi
  completionTimeoutPerGiB: 20
  selectors:
    virtualMachineInstanceSelector: {workload: database}
---
apiVersion: migrations.kubevirt.io/v1alpha1
kind: MigrationPolicy
metadata: {name: web-tier}
spec:
  allowAutoConverge: true
  bandwidthPerMigration: 128Mi
  selectors:
    virtualMachineInstanceSelector: {tier: web}
"""

VM = """
---
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {{name: {name}, namespace: default}}
spec:
  runStrategy: Always
  template:
    metadata:
      labels: {labels}
      annotations:
        livemig.io/dirty-rate: "{rate}"
        livemig.io/working-set: "{ws}"
    spec:
      domain:
        memory: {{guest: 128Mi}}
        devices: {{}}
      volumes:
      - name: root
        containerDisk: {{image: livemig/test-guest}}
"""

VMS = [  # name, labels, dirty rate, working set
    ("db-heavy", "{workload: database}", "96Mi", "48Mi"),
    ("db-light", "{workload: database}", "1Mi", "32Mi"),
    ("web-1", "{tier: web}", "4Mi", "32Mi"),
    ("web-2", "{tier: web}", "4Mi", "32Mi"),
    ("batch-1", "{app: batch}", "8Mi", "64Mi"),
    ("idle-1", "{app: idle}", "0", "16Mi"),
]


def manifests() -> LoadResult:
    text = SETTINGS + "".join(
        VM.format(name=n, labels=labels, rate=rate, ws=ws) for n, labels, rate, ws in VMS
    )
    result = LoadResult()
    problems = load_text(text, "<demo>", result)
    assert not problems, problems
    return result


async def set_cordon(client: ApiClient, node: str, cordoned: bool) -> None:
    def change(o: dict[str, Any]) -> dict[str, Any]:
        o.setdefault("spec", {})["unschedulable"] = cordoned
        return o

    await client.modify("Node", node, None, change)


async def wait_for(what: str, check: Any, within: float) -> None:
    deadline = clock.now() + within
    while not await check():
        if clock.now() > deadline:
            raise LivemigError(f"demo: timed out waiting for {what}")
        await clock.sleep(0.2)


async def demo(state: Path, isolate: bool) -> None:
    logging.getLogger("livemig.lifecycle").setLevel(logging.WARNING)  # the tour says it itself
    # As root, the nodes are separate hosts (network namespaces) with a slow primary network
    # and a dedicated migration network, which the demo's HyperConverged names.
    cluster = LocalCluster(
        state,
        nodes=3,
        node_memory=2 * 2**30,
        isolate=isolate,
        primary_rate="200mbit" if isolate else None,
    )
    try:
        await cluster.start()
    except BaseException:
        await cluster.stop(stop_vms=True)
        raise
    client = cluster.client()
    try:
        nodes = cluster.node_names
        out.print(f"[bold]1.[/] cluster up at {cluster.url}: {', '.join(nodes)}")
        if cluster.layout is not None:
            out.print(
                "   each node is its own network namespace: a primary network "
                f"(198.18.{cluster.layout.subnet}.0/24, shaped to 200 Mbit/s) and a dedicated "
                f"migration network {cluster.layout.migration_network} "
                f"(198.19.{cluster.layout.subnet}.0/24)",
                markup=False,
            )

        async def nodes_ready() -> bool:
            items, _ = await client.list("Node")
            return len(items) == len(nodes)

        await wait_for("the nodes to report", nodes_ready, 30)
        for other in nodes[1:]:
            await set_cordon(client, other, True)  # so every VM starts on node-1
        for item in manifests().objects:
            obj = to_dict(item.obj)
            if cluster.layout is not None and obj["kind"] == "HyperConverged":
                obj["spec"]["liveMigrationConfig"]["network"] = cluster.layout.migration_network
            await client.create(obj)
        out.print(
            "[bold]2.[/] applied HyperConverged, MigrationPolicies heavy-workloads and "
            f"web-tier, and {len(VMS)} VMs with different dirty rates"
        )

        async def all_running() -> bool:
            items, _ = await client.list("VirtualMachineInstance", NAMESPACE)
            return len(items) == len(VMS) and all(
                VMIStatus.of(i).phase is VMIPhase.RUNNING for i in items
            )

        await wait_for("the VMs to boot", all_running, 60)
        out.print(f"[bold]3.[/] all {len(VMS)} VMs run on {DRAINED} (real QEMU processes)")
        for other in nodes[1:]:
            await set_cordon(client, other, False)
        before = (0, 0)
        if cluster.layout is not None:
            links = cluster.layout.node(DRAINED)
            before = (
                isolation.counters(links.primary_link)[1],
                isolation.counters(links.migration_link)[1],
            )
        await set_node(client, DRAINED, cordon=True, drain=True)
        out.print(
            f"[bold]4.[/] `livemig drain {DRAINED}`: cordoned it; the controller migrates "
            "every VM off it (at most 2 at a time leave one node)"
        )
        drained = await follow_drain(client, DRAINED, give_up_after=300)
        out.print(await drain_summary(client, DRAINED))
        node = await client.get("Node", DRAINED)
        drain = (node.get("status") or {}).get("drain") or {}
        vmis, _ = await client.list("VirtualMachineInstance", NAMESPACE)
        left = [v["metadata"]["name"] for v in vmis if VMIStatus.of(v).on(DRAINED)]
        out.print(
            f"moved {human_bytes(int(drain.get('bytesMoved', 0)))} in total; "
            + (
                f"{DRAINED} now runs no VM"
                if drained and not left
                else f"still on {DRAINED}: {left}"
            )
        )
        if cluster.layout is not None:
            links = cluster.layout.node(DRAINED)
            primary = isolation.counters(links.primary_link)[1] - before[0]
            dedicated = isolation.counters(links.migration_link)[1] - before[1]
            out.print(
                f"{DRAINED} sent {human_bytes(dedicated)} over {cluster.layout.migration_network} "
                f"and {human_bytes(primary)} over the primary network (API traffic)",
                markup=False,
            )
    finally:
        out.print("[bold]5.[/] stopping the cluster: VMs, agents, controller, server")
        await cluster.stop(stop_vms=True)


def register_demo(app: typer.Typer) -> None:
    @app.command(name="demo")
    def demo_command(
        state: Annotated[
            Path | None,
            typer.Option(
                "--state",
                metavar="DIR",
                help="Keep the cluster's state here (default: a "
                "temporary folder, removed afterwards).",
            ),
        ] = None,
        isolate: Annotated[
            bool | None,
            typer.Option(
                "--isolate/--no-isolate",
                help="Separate hosts in network namespaces with a dedicated migration network "
                "(default: when run as root).",
                show_default=False,
            ),
        ] = None,
    ) -> None:
        """Start a 3-node cluster, apply the document's settings and two policies, boot six
        test-guest VMs, drain one node with live progress, show a table, and shut everything
        down (no QEMU left). As root, the nodes are separate network namespaces and the VMs
        move over a dedicated migration network."""
        require_qemu()
        separate = os.geteuid() == 0 if isolate is None else isolate
        if separate and os.geteuid() != 0:
            err.print("error: --isolate needs root (network namespaces)", markup=False)
            raise typer.Exit(2)
        if state is not None:
            run_async(demo(state, separate))
            return
        with tempfile.TemporaryDirectory(prefix="livemig-demo-") as tmp:
            run_async(demo(Path(tmp), separate))
