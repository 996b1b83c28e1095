"""Real QEMU for the data-plane tests: a lab that starts VMs and always stops them."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from livemig.hypervisor import MigrationParams, VMSpec
from livemig.hypervisor.qemu import QemuHypervisor, QemuVM
from livemig.migration import params_for
from livemig.policy import ClusterConfig, MigrationConfiguration, effective_configuration

MiB = 2**20
QEMU = shutil.which("qemu-system-x86_64")

requires_qemu = pytest.mark.skipif(
    QEMU is None, reason="qemu-system-x86_64 is not installed (.ci/run installs it)"
)


def configuration(**changes: Any) -> MigrationConfiguration:
    """KubeVirt's defaults with some settings changed (snake_case names)."""
    return replace(effective_configuration(ClusterConfig()), **changes)


class Lab:
    """Starts source/target QEMU pairs in a temporary folder; stops every one at the end."""

    def __init__(self, folder: Path) -> None:
        self.hv = QemuHypervisor(folder)
        self.vms: list[QemuVM] = []

    async def vm(self, spec: VMSpec) -> QemuVM:
        vm = await self.hv.start_vm(spec)
        self.vms.append(vm)
        return vm

    async def incoming(self, spec: VMSpec, params: MigrationParams) -> QemuVM:
        vm = await self.hv.start_incoming(spec, "tcp:127.0.0.1:0", params)
        self.vms.append(vm)
        return vm

    async def pair(self, spec: VMSpec, config: MigrationConfiguration) -> tuple[QemuVM, QemuVM]:
        source = await self.vm(spec)
        target = await self.incoming(spec, params_for(config))
        return source, target

    async def close(self) -> None:
        """Stop every VM, even if stopping one fails; kill whatever is left."""
        for vm in self.vms:
            try:
                if vm.process and vm.process.returncode is None:
                    os.kill(vm.process.pid, signal.SIGCONT)  # a test may have frozen it
                await vm.stop()
            finally:
                vm.kill()


@asynccontextmanager
async def lab(folder: Path) -> AsyncIterator[Lab]:
    the_lab = Lab(folder)
    try:
        yield the_lab
    finally:
        await the_lab.close()
