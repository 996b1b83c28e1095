"""What the migration runner costs over bare QMP calls, and how fast it acts on a deadline.

(a) the same 512 MiB idle test-guest VM migrated by a bare sequence of QMP commands (set
    capabilities and parameters, migrate, wait for the MIGRATION completed event) and (b) by
    livemig's MigrationRunner, alternating, N runs each; prints both medians and their ratio
    (target: runner <= 1.10x bare).
(c) decision latency: a VM that cannot converge, with a completion timeout of 1 s, migrated M
    times; the time from the deadline passing to the cancel being sent (target: p95 <= 0.5 s).

    python bench/migrate_overhead.py [--runs 5] [--latency-runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

from qemu.qmp import EventListener

from livemig.clock import RealClock
from livemig.hypervisor import MigrationParams, VMSpec
from livemig.hypervisor.qemu import UNLIMITED_BANDWIDTH, QemuHypervisor, QemuVM
from livemig.migration import MigrationRunner, params_for
from livemig.policy import ClusterConfig, effective_configuration
from report import emitter  # bench/report.py, beside this script

MiB = 2**20
clock = RealClock()


emit = emitter("migrate_overhead")


async def bare(source: QemuVM, uri: str) -> float:
    """Plain QMP: what a hand-written script would do. Timed, like the runner, from the first
    command (capabilities) to the MIGRATION completed event."""
    start = clock.now()
    await source.execute(
        "migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]}
    )
    await source.execute("migrate-set-parameters", {"max-bandwidth": UNLIMITED_BANDWIDTH})
    listener = EventListener("MIGRATION")
    with source.qmp.listen(listener):
        await source.execute("migrate", {"uri": uri})
        async for event in listener:
            if event["data"]["status"] in ("completed", "failed", "cancelled"):
                break
        elapsed = clock.now() - start
    status = (await source.execute("query-migrate"))["status"]
    assert status == "completed", status
    return elapsed


async def one(hv: QemuHypervisor, spec: VMSpec, use_runner: bool) -> float:
    config = effective_configuration(ClusterConfig())
    source = await hv.start_vm(spec)
    target = await hv.start_incoming(spec, "tcp:127.0.0.1:0", params_for(config))
    try:
        assert target.listen_uri is not None
        if not use_runner:
            return await bare(source, target.listen_uri)
        runner = MigrationRunner(
            source, target.listen_uri, config, spec.memory, clock, target=target
        )
        result = await runner.run()
        assert result.succeeded, result.failure_reason
        return result.duration
    finally:
        await source.stop()
        await target.stop()


async def latency(hv: QemuHypervisor, runs: int) -> list[float]:
    memory = 128 * MiB
    spec = VMSpec("late", memory=memory, working_set=16 * MiB, dirty_rate=32 * MiB)
    base = effective_configuration(ClusterConfig())
    config = replace(
        base, bandwidth_per_migration=8 * MiB, completion_timeout_per_gib=2**30 // memory
    )  # 1 s for 128 MiB
    out = []
    for _ in range(runs):
        source = await hv.start_vm(spec)
        target = await hv.start_incoming(spec, "tcp:127.0.0.1:0", MigrationParams())
        try:
            assert target.listen_uri is not None
            result = await MigrationRunner(source, target.listen_uri, config, memory, clock).run()
            (action,) = result.actions
            assert action.latency is not None
            out.append(action.latency)
        finally:
            await source.stop()
            await target.stop()
    return out


async def main(runs: int, latency_runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        hv = QemuHypervisor(Path(tmp))
        emit("accelerator", 1 if await hv.accel() == "kvm" else 0, "kvm=1,tcg=0")
        spec = VMSpec("idle512", memory=512 * MiB, working_set=256 * MiB)
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(runs):
            for use_runner in (False, True):
                times[use_runner].append(await one(hv, spec, use_runner))
        bare_median = statistics.median(times[False])
        runner_median = statistics.median(times[True])
        emit("bare_qmp_median", round(bare_median, 3), "s")
        emit("runner_median", round(runner_median, 3), "s")
        emit("runner_over_bare", round(runner_median / bare_median, 3), "ratio", "<= 1.10")
        lat = sorted(await latency(hv, latency_runs))
        p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
        emit("decision_latency_p50", round(statistics.median(lat), 4), "s")
        emit("decision_latency_p95", round(p95, 4), "s", "<= 0.5")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--latency-runs", type=int, default=10)
    args = ap.parse_args()
    asyncio.run(main(args.runs, args.latency_runs))
