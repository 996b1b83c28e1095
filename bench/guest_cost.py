"""The test guest's cost and accuracy: host CPU of an idle guest (target < 5% of a core) and
of busy ones, and the dirty rate it really achieves against the one asked for.

    python bench/guest_cost.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

from livemig.clock import RealClock
from livemig.hypervisor import VMSpec
from livemig.hypervisor.qemu import QemuHypervisor, QemuVM
from report import emitter  # bench/report.py, beside this script

MiB = 2**20
clock = RealClock()


emit = emitter("guest_cost")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cpu_share(vm: QemuVM, seconds: float) -> float:
    assert vm.pid is not None
    c0, t0 = cpu_seconds(vm.pid), clock.now()
    await clock.sleep(seconds)
    return 100 * (cpu_seconds(vm.pid) - c0) / (clock.now() - t0)


async def main(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        hv = QemuHypervisor(Path(tmp))
        emit("accelerator", 1 if await hv.accel() == "kvm" else 0, "kvm=1,tcg=0")
        vm = await hv.start_vm(VMSpec("cost", memory=256 * MiB, working_set=192 * MiB))
        try:
            emit("idle_cpu", round(await cpu_share(vm, seconds), 2), "% of a core", "< 5")
            for rate in (4 * MiB, 32 * MiB, 128 * MiB):
                await vm.set_dirty_rate(rate)
                emit(
                    f"cpu_at_{rate // MiB}MiBps",
                    round(await cpu_share(vm, seconds), 2),
                    "% of a core",
                )
                # short enough that the sweep does not lap the working set
                window = min(seconds, vm.working_set / (2 * rate))
                got = await vm.measure_dirty_rate(window)
                emit(f"achieved_over_asked_at_{rate // MiB}MiBps", round(got / rate, 3), "ratio")
        finally:
            await vm.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    asyncio.run(main(ap.parse_args().seconds))
