"""A model VM for the lifecycle tests, and a virtual-time loop to run them in.

``FakeVM`` implements the ``VM`` protocol (what the migration runner and the node agent use)
with a fluid model of QEMU's migration: pre-copy sends at the bandwidth cap while the guest
dirties at its rate, and converges only if the cap is higher; post-copy moves the rest at the
cap; a paused guest dirties nothing. It stands in for QEMU where the test is about *our*
decisions in time (a 150 s timeout in milliseconds); what QEMU itself does is tested against
real QEMU in tests/integration.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

import looptime

from livemig.clock import Clock, LoopClock
from livemig.errors import HypervisorError
from livemig.hypervisor import MigrationParams, TransferStats, TransferStatus, VMSpec

T = TypeVar("T")
MiB = 2**20


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on an event loop whose clock jumps whenever every task waits."""
    loop = looptime.new_event_loop(start=0.0)
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()


class FakeVM:
    def __init__(self, name: str, memory: int, dirty_rate: int, clock: Clock | None = None):
        self.name = name
        self.spec = VMSpec(name, memory, dirty_rate=dirty_rate)
        self.listen_uri: str | None = None
        self.working_set = memory
        self.clock = clock or LoopClock()
        self.dirty_rate = dirty_rate
        self.commands: list[tuple[float, str]] = []  # (time, command), as QMP would see them
        self._alive = True
        self._running = True
        self._status = TransferStatus.NONE
        self._bandwidth = 0.0
        self._started = 0.0
        self._remaining = float(memory)
        self._sent = 0.0
        self._last = 0.0
        self._postcopy = False
        self._event = asyncio.Event()
        self.link_up = True

    def mend_link(self) -> None:
        self.link_up = True

    # --- what the test does to it --------------------------------------------------------

    def die(self) -> None:
        """As if its QEMU was killed."""
        self._alive = False
        self._event.set()

    def break_link(self) -> None:
        """As if the migration link broke: pre-copy fails, post-copy pauses (both sides wait
        for a recovery, which fails until :meth:`mend_link`)."""
        self.link_up = False
        self._advance()
        if self._status is TransferStatus.POSTCOPY_ACTIVE:
            self._status = TransferStatus.POSTCOPY_PAUSED
        elif not self._status.finished:
            self._status = TransferStatus.FAILED
        self._event.set()

    # --- the model -----------------------------------------------------------------------

    def _advance(self) -> None:
        now = self.clock.now()
        dt, self._last = now - self._last, now
        if self._status not in (TransferStatus.ACTIVE, TransferStatus.POSTCOPY_ACTIVE):
            return
        dirty = 0 if (self._postcopy or not self._running) else self.dirty_rate
        self._sent += self._bandwidth * dt
        left = self._remaining - (self._bandwidth - dirty) * dt
        self._remaining = min(float(self.spec.memory), max(0.0, left))
        if self._remaining < self._bandwidth * 0.3:  # fits in the downtime limit: switch over
            self._remaining = 0.0
            self._status = TransferStatus.COMPLETED
            self._running = False  # postmigrate
            self._event.set()

    def _record(self, command: str) -> None:
        if not self._alive:
            raise HypervisorError(f"{self.name}: QMP {command} failed: connection closed")
        self.commands.append((round(self.clock.now(), 3), command))

    # --- the VM protocol -----------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return 4242

    def alive(self) -> bool:
        return self._alive

    async def stop(self) -> None:
        self._alive = False

    async def detach(self) -> None:
        pass

    async def set_dirty_rate(self, rate: int) -> None:
        self.dirty_rate = rate

    async def set_working_set(self, size: int) -> None:
        self.working_set = size

    async def stats(self) -> TransferStats:
        self._record("query-migrate")
        self._advance()
        return TransferStats(
            self._status,
            total_bytes=self.spec.memory,
            processed_bytes=round(self._sent),
            remaining_bytes=round(self._remaining),
            dirty_rate=self.dirty_rate,
            transfer_rate=self._bandwidth,
            elapsed=self.clock.now() - self._started,
        )

    async def wait_change(self, clock: Clock, within: float) -> None:
        self._event.clear()
        with contextlib.suppress(TimeoutError):
            await clock.wait_for(self._event.wait(), within)

    async def start_migration(self, uri: str, params: MigrationParams) -> None:
        self._record("migrate")
        self._started = self._last = self.clock.now()
        self._bandwidth = float(params.bandwidth or 1024 * MiB)
        self._status = TransferStatus.ACTIVE

    async def start_postcopy(self) -> None:
        self._record("migrate-start-postcopy")
        self._advance()
        self._postcopy = True
        self._status = TransferStatus.POSTCOPY_ACTIVE

    async def resume_migration(self, uri: str) -> None:
        self._record("migrate resume")
        if not self.link_up:
            raise HypervisorError(f"{self.name}: QMP migrate failed: Connection refused")
        if self._status is TransferStatus.POSTCOPY_PAUSED:
            self._last = self.clock.now()
            self._status = TransferStatus.POSTCOPY_ACTIVE

    async def pause_migration(self) -> None:
        self._record("migrate-pause")
        if self._status is TransferStatus.POSTCOPY_RECOVER:
            self._status = TransferStatus.POSTCOPY_PAUSED

    async def recover_incoming(self, uri: str) -> str:
        self._record("migrate-recover")
        return uri

    async def cancel_migration(self) -> None:
        self._record("migrate_cancel")
        self._advance()
        if not self._status.finished:
            self._status = TransferStatus.CANCELLED
            self._sent = 0.0  # QEMU reports zeros once cancelled
            self._event.set()

    async def pause(self) -> None:
        self._record("stop")
        self._advance()
        self._running = False

    async def resume(self) -> None:
        self._record("cont")
        self._running = True

    async def is_running(self) -> bool:
        self._record("query-status")
        return self._running

    async def run_state(self) -> str:
        self._record("query-status")
        if self._status is TransferStatus.COMPLETED:
            return "postmigrate"
        return "running" if self._running else "paused"
