"""What livemig needs from a hypervisor: VMs it can start, migrate, watch, pause and check.

Two implementations: ``qemu`` (real QEMU processes over QMP) and, later, ``sim`` (a model for
the planner). Everything above this package — the convergence decisions and the migration
runner — sees only the records and protocols defined here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from livemig.clock import Clock


class TransferStatus(StrEnum):
    """QEMU's migration status names (query-migrate ``status``)."""

    NONE = "none"
    SETUP = "setup"
    ACTIVE = "active"
    DEVICE = "device"
    PRE_SWITCHOVER = "pre-switchover"
    POSTCOPY_ACTIVE = "postcopy-active"
    POSTCOPY_PAUSED = "postcopy-paused"
    POSTCOPY_RECOVER = "postcopy-recover"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    WAIT_UNPLUG = "wait-unplug"
    COLO = "colo"

    @property
    def finished(self) -> bool:
        return self in (TransferStatus.COMPLETED, TransferStatus.FAILED, TransferStatus.CANCELLED)

    @property
    def in_postcopy(self) -> bool:
        return self in (
            TransferStatus.POSTCOPY_ACTIVE,
            TransferStatus.POSTCOPY_PAUSED,
            TransferStatus.POSTCOPY_RECOVER,
        )


class MigrationMode(StrEnum):
    """KubeVirt's migrationState.mode."""

    PRE_COPY = "PreCopy"
    POST_COPY = "PostCopy"
    PAUSED = "Paused"


@dataclass(frozen=True, slots=True)
class TransferStats:
    """One sample of a running migration, in bytes and bytes per second."""

    status: TransferStatus
    total_bytes: int = 0
    processed_bytes: int = 0
    remaining_bytes: int = 0
    dirty_rate: float = 0.0  # bytes/s dirtied by the guest
    transfer_rate: float = 0.0  # bytes/s sent
    iteration: int = 0  # pre-copy passes (dirty-sync-count)
    downtime_ms: int | None = None
    error: str | None = None
    elapsed: float = 0.0  # seconds since the migration started, measured by us


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
