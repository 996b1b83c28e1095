"""What livemig needs from a hypervisor: VMs it can start, migrate, watch, pause and check.

Two implementations: ``qemu`` (real QEMU processes over QMP) and, later, ``sim`` (a model for
the planner). Everything above this package — the convergence decisions and the migration
runner — sees only the records and protocols defined here.
"""

from __future__ import annotations

from collections.abc import Collection
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
    """One VM's process, as the migration runner and the node agent see it."""

    name: str
    spec: VMSpec
    #: An incoming VM's actual migration address, once it listens.
    listen_uri: str | None
    #: The test guest's working set as last set (bytes).
    working_set: int

    @property
    def pid(self) -> int | None: ...

    def alive(self) -> bool:
        """Whether the VM's process still runs."""
        ...

    async def stop(self) -> None:
        """End the VM's process and release it; safe to call twice."""
        ...

    async def detach(self) -> None:
        """Let go of the VM but leave its process running (an agent restarting)."""
        ...

    async def set_dirty_rate(self, rate: int) -> None: ...

    async def set_working_set(self, size: int) -> None: ...

    async def stats(self) -> TransferStats:
        """The migration as this side sees it (an incoming VM reports its side)."""
        ...

    async def wait_change(self, clock: Clock, within: float) -> None:
        """Return when a migration event arrives or after ``within`` seconds, whichever is first."""
        ...

    async def start_migration(self, uri: str, params: MigrationParams) -> None: ...

    async def start_postcopy(self) -> None: ...

    async def resume_migration(self, uri: str) -> None:
        """Source side of a post-copy recovery: reconnect to ``uri`` and carry on."""
        ...

    async def pause_migration(self) -> None:
        """Force a post-copy recovery that hangs back to paused, so it can be retried."""
        ...

    async def recover_incoming(self, uri: str) -> str:
        """Target side of a post-copy recovery: listen on ``uri`` again (``tcp:HOST:0`` picks a
        port); the actual address."""
        ...

    async def cancel_migration(self) -> None: ...

    async def pause(self) -> None: ...

    async def resume(self) -> None: ...

    async def is_running(self) -> bool: ...

    async def run_state(self) -> str:
        """QEMU's run state: running, paused, inmigrate, postmigrate, …"""
        ...


class Hypervisor(Protocol):
    def handle_for(self, spec: VMSpec, incoming: bool = False) -> str:
        """Where ``spec``'s VM will live, known before it starts (for the agent's ledger)."""
        ...

    async def attach(self, spec: VMSpec, handle: str) -> VM:
        """The running VM at ``handle`` (an agent restarting); HypervisorError if it is gone."""
        ...

    async def reap(self, keep: Collection[str]) -> list[str]:
        """Stop every VM under this hypervisor whose handle is not in ``keep`` (nobody manages
        it); what was stopped."""
        ...

    async def start_vm(self, spec: VMSpec) -> VM: ...

    async def start_incoming(self, spec: VMSpec, uri: str, params: MigrationParams) -> VM:
        """A VM waiting for a migration on ``uri`` with the capabilities ``params`` need."""
        ...
