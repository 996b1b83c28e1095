"""How close a drain comes to the fastest the cluster's limits allow, on a real in-process
cluster (HTTP API, SQLite, controller, agents, QEMU test guests).

A node with N test-guest VMs (mixed working sets and dirty rates) is drained with
bandwidthPerMigration capped, under parallelOutboundMigrationsPerNode 1 and then 2. For each:

- drain duration: from the drain request (the taint) to the node having no VMI, as recorded
  in the Node's status;
- lower bound: the data the VMs' migrations had to send (their dataProcessedBytes: memory,
  plus pages the guest dirtied again) divided by the admitted aggregate bandwidth
  (bandwidthPerMigration x parallel migrations out of the node);
- ratio = duration / lower bound (target <= 1.15): what admission, target preparation and
  hand-over cost on top of moving the bytes.

    python bench/drain.py [--vms 8] [--bandwidth 32Mi] [--parallel 1,2]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

from livemig.api.builders import hyperconverged, make_test_guest_vm
from livemig.api.lifecycle import EVACUATION_ANNOTATION, MigrationStatus
from livemig.api.quantity import parse_quantity
from livemig.api.status import parse_timestamp
from livemig.api.vmi_status import VMIPhase, VMIStatus
from livemig.cli.node_cmds import set_node
from livemig.client import ApiClient
from livemig.clock import RealClock
from livemig.cluster import LocalCluster
from report import emitter  # bench/report.py, beside this script

clock = RealClock()
emit = emitter("drain")
#: (memory, working set, dirty rate) per VM, cycled: small and large, idle and busy guests.
LOADS = [
    ("192Mi", "64Mi", "0"),
    ("256Mi", "96Mi", "2Mi"),
    ("128Mi", "48Mi", "4Mi"),
    ("320Mi", "128Mi", "1Mi"),
]


async def wait_for(what: str, check: Any, within: float) -> Any:
    deadline = clock.now() + within
    while not (found := await check()):
        if clock.now() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await clock.sleep(0.2)
    return found


async def one_drain(folder: Path, vms: int, bandwidth: str, parallel: int) -> dict[str, float]:
    cluster = LocalCluster(folder, nodes=3, node_memory=4 * 2**30)
    await cluster.start()
    client = cluster.client()
    try:
        names = cluster.node_names
        await wait_for("nodes", lambda: _nodes(client, len(names)), 30)
        await client.create(
            hyperconverged(
                bandwidthPerMigration=bandwidth,
                parallelOutboundMigrationsPerNode=parallel,
                parallelMigrationsPerCluster=5,
            )
        )
        for other in names[1:]:
            await set_node(client, other, cordon=True, drain=None)
        for i in range(vms):
            memory, ws, rate = LOADS[i % len(LOADS)]
            await client.create(
                make_test_guest_vm(f"vm-{i}", working_set=ws, dirty_rate=rate, memory=memory)
            )

        async def running() -> bool:
            items, _ = await client.list("VirtualMachineInstance")
            return len(items) == vms and all(
                VMIStatus.of(v).phase is VMIPhase.RUNNING for v in items
            )

        await wait_for("VMs running", running, 120)
        for other in names[1:]:
            await set_node(client, other, cordon=False, drain=None)
        await clock.sleep(2.0)  # let the guests touch their working sets
        drained = names[0]
        await set_node(client, drained, cordon=True, drain=True)

        async def done() -> dict[str, Any] | None:
            node = await client.get("Node", drained)
            drain = (node.get("status") or {}).get("drain") or {}
            return drain if drain.get("completionTimestamp") else None

        drain = await wait_for("the drain", done, 600)
        migrations, _ = await client.list("VirtualMachineInstanceMigration")
        evacuations = [
            MigrationStatus.of(m)
            for m in migrations
            if (m["metadata"].get("annotations") or {}).get(EVACUATION_ANNOTATION) == drained
        ]
        failed = sum(not st.succeeded for st in evacuations)
        sent = sum((st.figures.processed if st.figures else 0) for st in evacuations)
        started = parse_timestamp(drain["startTimestamp"]).timestamp()
        ended = parse_timestamp(drain["completionTimestamp"]).timestamp()
        cap = parse_quantity(bandwidth).to_bytes()
        bound = sent / (cap * parallel)
        return {
            "duration": ended - started,
            "bound": bound,
            "sent": float(sent),
            "failed": float(failed),
            "attempts": float(len(evacuations)),
        }
    finally:
        await client.close()
        await cluster.stop(stop_vms=True)


async def _nodes(client: ApiClient, n: int) -> bool:
    return len((await client.list("Node"))[0]) == n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vms", type=int, default=8)
    ap.add_argument("--bandwidth", default="32Mi", help="bandwidthPerMigration")
    ap.add_argument("--parallel", default="1,2", help="parallelOutboundMigrationsPerNode values")
    args = ap.parse_args()
    for parallel in (int(p) for p in args.parallel.split(",")):
        with tempfile.TemporaryDirectory(prefix="livemig-bench-drain-") as tmp:
            r = asyncio.run(one_drain(Path(tmp), args.vms, args.bandwidth, parallel))
        tag = f"per_node_{parallel}"
        emit(f"{tag}_drain_seconds", round(r["duration"], 2), "s")
        emit(f"{tag}_lower_bound_seconds", round(r["bound"], 2), "s")
        emit(f"{tag}_ratio", round(r["duration"] / r["bound"], 3), "x", "<= 1.15")
        emit(f"{tag}_data_sent", round(r["sent"] / 2**20, 1), "MiB")
        emit(f"{tag}_evacuations", r["attempts"], "migrations")
        emit(f"{tag}_failed_evacuations", r["failed"], "migrations")


if __name__ == "__main__":
    main()
