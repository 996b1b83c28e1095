"""Control-plane latency, on a real in-process cluster (HTTP API, SQLite, controller, agents,
QEMU):

(a) from the `migrate` request (creating the VirtualMachineInstanceMigration) to the source
    QEMU receiving its `migrate` command, over N requests (target p95 <= 200 ms);
(b) from a migration finishing to the next pending one's `migrate` command, with
    parallelMigrationsPerCluster 1 and a queue of migrations (target p95 <= 200 ms).

The times are taken by wrapping QemuVM.start_migration and MigrationRunner.run in this process
(measurement only; behaviour is unchanged).

    python bench/control_latency.py [--requests 50] [--queue 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from livemig.api.builders import make_test_guest_vm, migration_request
from livemig.api.status import parse_timestamp
from livemig.clock import RealClock
from livemig.cluster import LocalCluster
from livemig.hypervisor.qemu import QemuVM
from livemig.informer import Informer
from livemig.migration import MigrationRunner
from report import emitter  # bench/report.py, beside this script

clock = RealClock()
migrate_sent: list[tuple[float, str]] = []  # (time, VM name)
runs_ended: list[float] = []

_start_migration = QemuVM.start_migration
_run = MigrationRunner.run


async def _timed_start(self: QemuVM, uri: str, params: Any) -> None:
    migrate_sent.append((clock.now(), self.name))
    await _start_migration(self, uri, params)


async def _timed_run(self: MigrationRunner, adopt: Any = None) -> Any:
    result = await _run(self, adopt)
    runs_ended.append(clock.now())
    return result


QemuVM.start_migration = _timed_start  # type: ignore[method-assign]
MigrationRunner.run = _timed_run  # type: ignore[method-assign]


emit = emitter("control_latency")
VMIM = "VirtualMachineInstanceMigration"
VMI = "VirtualMachineInstance"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def vm(name: str) -> dict[str, Any]:
    return make_test_guest_vm(name, working_set="4Mi", memory="64Mi")


def phase(seen: Informer, name: str) -> str:
    m = seen.get(VMIM, name, "default") or {}
    return str((m.get("status") or {}).get("phase", ""))


async def until(check: Any, within: float = 60) -> None:
    """Wait for ``check()``; it reads the benchmark's own watch cache, so waiting does not load
    the API server being measured."""
    deadline = clock.now() + within
    while not check():
        if clock.now() > deadline:
            raise TimeoutError("benchmark step timed out")
        await clock.sleep(0.01)


async def main(requests: int, queue: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster(Path(tmp), nodes=2, node_memory=4 * 2**30)
        await cluster.start()
        client = cluster.client()
        seen = Informer(client, (VMIM, VMI, "Node"), clock)
        seen.start()
        try:
            await seen.synced()
            await until(lambda: len(seen.objects("Node")) == 2)
            await client.create(
                {
                    "apiVersion": "hco.kubevirt.io/v1beta1",
                    "kind": "HyperConverged",
                    "metadata": {"name": "kubevirt-hyperconverged", "namespace": "openshift-cnv"},
                    "spec": {"liveMigrationConfig": {"parallelMigrationsPerCluster": 1}},
                }
            )
            names = [f"vm-{i}" for i in range(4)]
            for n in names:
                await client.create(vm(n))
            await until(lambda: _running(seen, len(names)))

            # (a) request -> migrate command, one at a time
            latencies: list[float] = []
            stages: list[dict[str, float]] = []
            for i in range(requests):
                name = f"a-{i}"
                sent = len(migrate_sent)
                t0 = clock.now()
                await client.create(migration_request(name, names[0]))
                try:
                    await until(lambda s=sent: _sent(s), 20)
                except TimeoutError:
                    print(json.dumps(seen.get(VMIM, name, "default"))[:3000])
                    raise
                latencies.append(migrate_sent[sent][0] - t0)
                await until(lambda n=name: _done(seen, n))
                stages.append(_stages(await client.get(VMIM, name, "default")))
            emit("request_to_migrate_p50", round(statistics.median(latencies) * 1000, 1), "ms")
            emit("request_to_migrate_p95", round(pct(latencies, 0.95) * 1000, 1), "ms", "<= 200")
            for stage in stages[0]:
                values = [s[stage] for s in stages if stage in s]
                emit(f"stage_{stage}_p50", round(statistics.median(values) * 1000, 1), "ms")

            # (b) a queue behind a cluster limit of 1: finish -> next start
            migrate_sent.clear()
            runs_ended.clear()
            queued = [f"b-{i}" for i in range(queue)]
            width = len(names)  # one unfinished migration per VMI: queue them in batches
            for start in range(0, queue, width):
                batch = queued[start : start + width]
                for j, name in enumerate(batch):
                    await client.create(migration_request(name, names[j]))
                await until(lambda b=batch: _all_done(seen, b), 120)
            await until(lambda: _all_done(seen, queued), 120)
            starts = sorted(t for t, _ in migrate_sent)
            gaps = [
                min(s - e for s in starts if s >= e)
                for e in sorted(runs_ended)[:-1]
                if any(s >= e for s in starts)
            ]
            gaps = [g for g in gaps if g < 5]  # ends with nothing queued behind them
            emit("finish_to_next_start_p50", round(statistics.median(gaps) * 1000, 1), "ms")
            emit("finish_to_next_start_p95", round(pct(gaps, 0.95) * 1000, 1), "ms", "<= 200")
            emit("samples", len(gaps), "count")

        finally:
            await seen.stop()
            await cluster.stop(stop_vms=True)


PHASES = ("Pending", "Scheduled", "PreparingTarget", "TargetReady", "Running")


def _stages(m: dict[str, Any]) -> dict[str, float]:
    """Time from the previous step to each phase (where the request's latency goes)."""
    times = {
        t["phase"]: parse_timestamp(t["phaseTransitionTimestamp"]).timestamp()
        for t in m["status"].get("phaseTransitionTimestamps", [])
    }
    out, before, last = (
        {},
        "created",
        parse_timestamp(m["metadata"]["creationTimestamp"]).timestamp(),
    )
    for p in PHASES:
        if p in times:
            out[f"{before}_to_{p}"] = times[p] - last
            before, last = p, times[p]
    return out


def _running(seen: Informer, n: int) -> bool:
    items = seen.objects(VMI)
    return len(items) == n and all((i.get("status") or {}).get("phase") == "Running" for i in items)


def _sent(before: int) -> bool:
    return len(migrate_sent) > before


def _done(seen: Informer, name: str) -> bool:
    return phase(seen, name) in ("Succeeded", "Failed")


def _all_done(seen: Informer, names: list[str]) -> bool:
    return all(_done(seen, n) for n in names)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--queue", type=int, default=20)
    args = ap.parse_args()
    asyncio.run(main(args.requests, args.queue))
