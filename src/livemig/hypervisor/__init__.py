"""What livemig needs from a hypervisor: VMs it can start, migrate, watch, pause and check.

Two implementations: ``qemu`` (real QEMU processes over QMP) and, later, ``sim`` (a model for
the planner). Everything above this package — the convergence decisions and the migration
runner — sees only the records and protocols defined here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from livemig.api.transfer import MigrationMode, TransferStats, TransferStatus
from livemig.clock import Clock

__all__ = [
    "VM",
    "Hypervisor",
    "MemoryCheck",
    "MigrationMode",
    "MigrationParams",
    "TransferStats",
    "TransferStatus",
    "VMSpec",
]


@dataclass(frozen=True, slots=True)
class MigrationParams:
    """What the source needs to run one migration (from the effective configuration)."""

    bandwidth: int = 0  # bytes/s, 0 = no limit
    auto_converge: bool = False
    post_copy: bool = False  # the postcopy-ram capability (switching is the runner's decision)
    downtime_limit_ms: int = 300


@dataclass(frozen=True, slots=True)
class MemoryCheck:
    """The test guest's memory pattern, read page by page."""

    pages: int
    bad_pages: int
    first_bad_page: int | None = None
    values: tuple[int, int] | None = None  # (newer, older) byte values seen

    @property
    def ok(self) -> bool:
        return self.bad_pages == 0


@dataclass(frozen=True, slots=True)
class VMSpec:
    """A VM to start: the test guest (dirty rate and working set) or a disk image."""

    name: str
    memory: int  # bytes
    vcpus: int = 1
    disk: str | None = None  # a raw disk image; None = the built-in test guest
    dirty_rate: int = 0  # bytes/s (test guest)
    working_set: int = 16 * 2**20  # bytes (test guest)
    extra_args: tuple[str, ...] = field(default_factory=tuple)


class VM(Protocol):
    name: str

    async def stats(self) -> TransferStats: ...

    async def wait_change(self, clock: Clock, within: float) -> None:
        """Return when a migration event arrives or after ``within`` seconds, whichever is first."""
        ...

    async def start_migration(self, uri: str, params: MigrationParams) -> None: ...

    async def start_postcopy(self) -> None: ...

    async def cancel_migration(self) -> None: ...

    async def pause(self) -> None: ...

    async def resume(self) -> None: ...

    async def is_running(self) -> bool: ...

    async def run_state(self) -> str:
        """QEMU's run state: running, paused, inmigrate, postmigrate, …"""
        ...


class Hypervisor(Protocol):
    async def start_vm(self, spec: VMSpec) -> VM: ...

    async def start_incoming(self, spec: VMSpec, uri: str, params: MigrationParams) -> VM:
        """A VM waiting for a migration on ``uri`` with the capabilities ``params`` need."""
        ...
