"""What every part of the node agent shares: its state (the VMs here, the migrations in and
out, the ledger, the watch cache) and the writes both sides of a migration make."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx

from livemig.agent.ledger import Ledger, LocalEntry
from livemig.api.lifecycle import MigrationStatus, transition
from livemig.api.models import EventType
from livemig.api.vmi_status import VMIPhase, VMIStatus, vmi_failed
from livemig.client import ApiClient
from livemig.clock import Backoff, Clock
from livemig.errors import (
    InvalidInput,
    LivemigError,
    NotFound,
)
from livemig.events import EventRecorder
from livemig.hypervisor import VM, Hypervisor
from livemig.hypervisor.qemu import QemuHypervisor
from livemig.informer import Informer
from livemig.migration import (
    POSTCOPY_GIVE_UP,
    MigrationRunner,
)
from livemig.perobject import PerObject

log = logging.getLogger("livemig.agent.agent")

VMI = "VirtualMachineInstance"
VMIM = "VirtualMachineInstanceMigration"
T = TypeVar("T")
#: Backoff for calls the API server must take (outcomes, hand-overs, start-up): doubling, with
#: jitter so that agents do not all call back at the same instant after an outage.
RETRY_FIRST, RETRY_CAP = 0.5, 10.0

Key = tuple[str, str]


def parse_key(text: str) -> Key:
    ns, name = text.split("/", 1)
    return ns, name


def key_text(key: Key) -> str:
    return f"{key[0]}/{key[1]}"


@dataclass
class Outgoing:
    runner: MigrationRunner
    task: asyncio.Task[None]
    last_report: float = 0.0
    report: asyncio.Task[Any] | None = None
    link_broken: bool = False  # post-copy paused by a broken link, as last sampled
    abort_refused: bool = False  # an abort was asked in post-copy (said once, as an event)


@dataclass
class Local:
    """A VMI running here, and what its guest was last told."""

    vm: VM
    load: tuple[int, int] = (0, 0)
    key: Key = ("", "")


@dataclass
class Incoming:
    """The target side of a migration: its QEMU, and when it was first seen complete."""

    vm: VM
    vmi: Key
    completed_at: float | None = None
    offered_at: float | None = None  # when it last listened again after a broken link


class AgentBase:
    def __init__(
        self,
        client: ApiClient,
        node: str,
        state_dir: Path,
        clock: Clock,
        memory_capacity: int = 8 * 2**30,
        address: str = "127.0.0.1",
        heartbeat: float = 2.0,
        hypervisor: Hypervisor | None = None,
        backoff: tuple[float, float] = (1.0, 300.0),
        disk_root: Path | None = None,
        postcopy_give_up: float = POSTCOPY_GIVE_UP,
        networks: dict[str, str] | None = None,
    ) -> None:
        self.client = client
        self.node = node
        self.state_dir = Path(state_dir)
        #: hostDisk images must lie in here (``livemig agent --disk-root``).
        self.disk_root = Path(disk_root) if disk_root is not None else self.state_dir / "disks"
        self.clock = clock
        self.memory_capacity = memory_capacity
        self.address = address
        #: This node's address on each named network (a dedicated migration network).
        self.networks = dict(networks or {})
        self.heartbeat = heartbeat
        self.postcopy_give_up = postcopy_give_up
        self.hv: Hypervisor = hypervisor or QemuHypervisor(
            self.state_dir / "vms", clock=clock, disk_root=self.disk_root
        )
        self.local: dict[Key, Local] = {}
        self.incoming: dict[Key, Incoming] = {}  # by migration key
        self.outgoing: dict[Key, Outgoing] = {}
        self.ledger = Ledger.load(self.state_dir / "vms.json")
        self.informer = Informer(client, (VMI, VMIM), clock)
        self.events = EventRecorder(client, f"livemig-agent/{node}", clock)
        self.each = PerObject(self.informer, self.events, clock, *backoff)
        self._random = random.Random()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.wall(), UTC)

    def _listen_address(self, network: str | None) -> str:
        """Where incoming migrations listen: this node's address on the cluster's dedicated
        migration network when one is set, else its primary address."""
        if network is None:
            return self.address
        try:
            return self.networks[network]
        except KeyError:
            raise InvalidInput(
                f"{self.node} has no address on migration network {network!r} (its agent "
                f"knows {', '.join(sorted(self.networks)) or 'none'}: "
                f"start it with --network {network}=ADDRESS)"
            ) from None

    def _say(self, kind: str, key: Key, event_type: EventType, reason: str, message: str) -> None:
        """Record an event about an object without holding up the caller (best effort)."""
        raw = self.informer.get(kind, key[1], key[0]) or {
            "kind": kind,
            "metadata": {"namespace": key[0], "name": key[1]},
        }
        self.events.emit(raw, event_type, reason, message)

    def _remember(self, key: Key, vm: VM, handle: str) -> None:
        """Record (again) that ``vm`` at ``handle`` runs VMI ``key``, with its current load."""
        spec = vm.spec
        if spec.disk is None and spec.working_set != vm.working_set:
            spec = replace(spec, working_set=vm.working_set)
        self.ledger.local[key_text(key)] = LocalEntry(handle, spec)
        self.ledger.save()

    def _forget(self, key: Key) -> None:
        self.ledger.local.pop(key_text(key), None)
        self.ledger.save()

    async def _vmi_lost(self, key: Key, reason: str) -> None:
        out = await self._vmi_write(key, partial(vmi_failed, reason=reason, node=self.node))
        if out is not None and VMIStatus.of(out).phase is VMIPhase.FAILED:
            await self.events.record(out, EventType.WARNING, "Failed", reason)

    async def _vmi_write(
        self, key: Key, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        try:
            return await self.informer.modify(VMI, key[1], key[0], change, status=True)
        except NotFound:
            return None

    def _drop_incoming(self, mkey: Key) -> None:
        self.incoming.pop(mkey, None)
        self.ledger.incoming.pop(key_text(mkey), None)
        self.ledger.save()

    async def _stop_local(self, key: Key) -> None:
        local = self.local.pop(key, None)
        if local is not None:
            try:
                await local.vm.stop()
            except (LivemigError, OSError) as exc:
                log.warning("%s: stopping %s/%s: %s", self.node, *key, exc)
            self._forget(key)

    async def _persist(self, write: Callable[[], Awaitable[T]], what: str) -> T:
        """``write()`` until the API server takes it: transport failures are retried with a
        doubling, jittered backoff; a refusal other than that is raised."""
        backoff = Backoff(RETRY_FIRST, RETRY_CAP, self._random)
        while True:
            try:
                return await write()
            except httpx.TransportError as exc:
                wait = backoff.next()
                log.warning(
                    "%s: cannot reach the API server to %s (%s); retrying in %.1f s",
                    self.node,
                    what,
                    type(exc).__name__,
                    wait,
                )
                await self.clock.sleep(wait)

    async def _migration_step(
        self,
        mkey: Key,
        step: Callable[[MigrationStatus], MigrationStatus],
        missing_ok: bool = True,
    ) -> dict[str, Any] | None:
        """Apply a lifecycle step to a migration's status; None if the migration is gone
        (NotFound instead with ``missing_ok=False``)."""
        try:
            return await self.informer.modify(
                VMIM, mkey[1], mkey[0], lambda o: transition(o, step), status=True
            )
        except NotFound:
            if not missing_ok:
                raise
            return None
