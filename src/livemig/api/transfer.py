"""What a running migration looks like from outside: QEMU's transfer status, KubeVirt's
migration mode, and one sample of the transfer figures. Plain records, so the pure convergence
decision and the hypervisors share them without the pure core importing a hypervisor."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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
