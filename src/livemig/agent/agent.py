"""The node agent: runs this node's VMIs as QEMU processes, prepares incoming migrations, runs
outgoing ones with the migration runner, reports, and hands VMIs over when done.

After any crash the agent asks QEMU, not its memory, what happened. Every QEMU it starts is in
its ledger (:mod:`livemig.agent.ledger`) before it starts, and every outcome before it is sent,
so a restarted agent re-adopts its QEMUs, takes over a migration QEMU is still running, finishes
a hand-over QEMU already completed, and sends outcomes the API server has not yet taken. A VM
whose QEMU died is Failed, with why; a target whose incoming QEMU holds a completed guest never
stops it: that QEMU *is* the VM now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx

from livemig.agent.ledger import IncomingEntry, Ledger, LocalEntry
from livemig.agent.vmspec import guest_load, vm_spec
from livemig.api.lifecycle import Figures, MigrationObject, MigrationStatus, Phase, transition
from livemig.api.loading import validate
from livemig.api.models import EventType, VirtualMachineInstance
from livemig.api.status import condition, timestamp
from livemig.api.transfer import MigrationMode
from livemig.api.vmi_status import VMIPhase, VMIStatus, vmi_failed, vmi_handed_over, vmi_running
from livemig.client import ApiClient
from livemig.clock import Backoff, Clock
from livemig.errors import (
    AlreadyExists,
    CancelRefused,
    HypervisorError,
    LivemigError,
    NotFound,
)
from livemig.events import EventRecorder
from livemig.hypervisor import VM, Hypervisor, TransferStats, TransferStatus
from livemig.hypervisor.qemu import QemuHypervisor
from livemig.informer import LIFECYCLE, Informer, reconcile_forever
from livemig.migration import (
    POSTCOPY_GIVE_UP,
    USER_CANCEL,
    MigrationResult,
    MigrationRunner,
    Outcome,
    params_for,
)
from livemig.perobject import PerObject
from livemig.policy import MigrationConfiguration
from livemig.tasks import cancel_and_wait

__all__ = ["NodeAgent", "guest_load", "vm_spec"]

log = logging.getLogger(__name__)

VMI = "VirtualMachineInstance"
VMIM = "VirtualMachineInstanceMigration"
T = TypeVar("T")
REPORT_INTERVAL = 1.0
#: Seconds a target whose QEMU completed a migration waits for the source to record it before
#: recording it itself (the source's record carries the transfer figures; a dead source's none).
HANDOVER_GRACE = 10.0
#: Seconds between a target's looks at its incoming QEMUs for a broken post-copy link, and
#: before it offers a new recovery address when an offer was not taken.
RECOVERY_WATCH, RECOVERY_REOFFER = 0.5, 5.0
#: Backoff for calls the API server must take (outcomes, hand-overs, start-up): doubling, with
#: jitter so that agents do not all call back at the same instant after an outage.
RETRY_FIRST, RETRY_CAP = 0.5, 10.0

Key = tuple[str, str]


def _key(text: str) -> Key:
    ns, name = text.split("/", 1)
    return ns, name


def _text(key: Key) -> str:
    return f"{key[0]}/{key[1]}"


@dataclass
class Outgoing:
    runner: MigrationRunner
    task: asyncio.Task[None]
    last_report: float = 0.0
    report: asyncio.Task[Any] | None = None
    link_broken: bool = False  # post-copy paused by a broken link, as last sampled


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


class NodeAgent:
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
    ) -> None:
        self.client = client
        self.node = node
        self.state_dir = Path(state_dir)
        #: hostDisk images must lie in here (``livemig agent --disk-root``).
        self.disk_root = Path(disk_root) if disk_root is not None else self.state_dir / "disks"
        self.clock = clock
        self.memory_capacity = memory_capacity
        self.address = address
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
        self._background: set[asyncio.Task[None]] = set()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.wall(), UTC)

    # --- life cycle --------------------------------------------------------------------------

    async def run(self) -> None:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.disk_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        await self._persist(self._report_node, "wait for the API server")
        lost = await self._readopt()
        await self._deliver_outbox()  # before judging lost VMs: a hand-over may be among them
        for key, reason in lost:
            await self._persist(partial(self._vmi_lost, key, reason), f"fail {_text(key)}")
        beat = asyncio.create_task(self._heartbeats())
        recover = asyncio.create_task(self._recoveries())
        try:
            await reconcile_forever(
                self.informer,
                self.reconcile,
                self.clock,
                on_ready=lambda: LIFECYCLE.info(
                    "livemig agent: node %s up, %d VMs adopted, reporting to %s",
                    self.node,
                    len(self.local),
                    self.client.url,
                ),
            )
        finally:
            await cancel_and_wait(recover)
            await cancel_and_wait(beat)

    async def shutdown(self, stop_vms: bool) -> None:
        """Stop our own tasks; with ``stop_vms`` also every QEMU (else they keep running)."""
        for out in list(self.outgoing.values()):
            await cancel_and_wait(out.task)
        vms = [loc.vm for loc in self.local.values()] + [i.vm for i in self.incoming.values()]
        for vm in vms:
            if stop_vms:
                await vm.stop()
            else:
                await vm.detach()
        if stop_vms:
            self.ledger.local.clear()
            self.ledger.incoming.clear()
            self.ledger.save()

    async def _attach(self, entry: LocalEntry | IncomingEntry, what: str) -> VM | None:
        for _ in range(3):  # QEMU may still be hanging up on the previous agent
            try:
                vm = await self.hv.attach(entry.spec, entry.handle)
            except HypervisorError as exc:
                log.warning("%s: cannot re-adopt %s yet: %s", self.node, what, exc)
                if "gone" in str(exc):
                    return None
                continue
            vm.working_set = entry.spec.working_set
            return vm
        return None

    async def _readopt(self) -> list[tuple[Key, str]]:
        """Take the ledger's QEMUs back; the VMIs whose QEMU is gone (and why)."""
        lost = []
        for text, entry in list(self.ledger.local.items()):
            vm = await self._attach(entry, text)
            if vm is None:
                del self.ledger.local[text]
                lost.append(
                    (_key(text), f"its QEMU was gone when the node agent on {self.node} restarted")
                )
                continue
            spec = entry.spec
            self.local[_key(text)] = Local(vm, (spec.dirty_rate, spec.working_set), _key(text))
            with contextlib.suppress(HypervisorError):
                if await vm.run_state() == "prelaunch":
                    # Started stopped (-S), and this agent died before it said "run".
                    await vm.resume()
        for text, incoming in list(self.ledger.incoming.items()):
            vm = await self._attach(incoming, f"the incoming VM of {text}")
            if vm is None:
                del self.ledger.incoming[text]  # its migration's source sees the stream broken
                continue
            self.incoming[_key(text)] = Incoming(vm, _key(incoming.vmi))
        self.ledger.save()
        keep = [e.handle for e in self.ledger.local.values()]
        keep += [e.handle for e in self.ledger.incoming.values()]
        for stray in await self.hv.reap(keep):
            log.warning("%s: stopped %s: no ledger entry manages it", self.node, stray)
        return lost

    def _remember(self, key: Key, vm: VM, handle: str) -> None:
        """Record (again) that ``vm`` at ``handle`` runs VMI ``key``, with its current load."""
        spec = vm.spec
        if spec.disk is None and spec.working_set != vm.working_set:
            spec = replace(spec, working_set=vm.working_set)
        self.ledger.local[_text(key)] = LocalEntry(handle, spec)
        self.ledger.save()

    def _forget(self, key: Key) -> None:
        self.ledger.local.pop(_text(key), None)
        self.ledger.save()

    # --- node status -------------------------------------------------------------------------

    async def _heartbeats(self) -> None:
        while True:
            await self.clock.sleep(self.heartbeat)
            try:
                await self._report_node()
            except (LivemigError, httpx.HTTPError) as exc:
                # A slow or restarting server must not end the heartbeats for good.
                log.warning("%s: heartbeat failed: %s", self.node, exc or type(exc).__name__)
            try:
                await self._sweep()
            except (LivemigError, httpx.HTTPError) as exc:
                log.warning("%s: checking QEMUs: %s", self.node, exc or type(exc).__name__)

    async def _report_node(self) -> None:
        now = timestamp(self._now())

        def beat(o: dict[str, Any]) -> dict[str, Any]:
            st = o.setdefault("status", {})
            condition(st, "Ready", "True", "AgentReporting", "the node agent is reporting")
            for c in st["conditions"]:
                if c["type"] == "Ready":
                    c["lastHeartbeatTime"] = now
            st["capacity"] = {"memoryBytes": self.memory_capacity}
            st["addresses"] = [{"type": "InternalIP", "address": self.address}]
            return o

        try:
            await self.client.modify("Node", self.node, None, beat, status=True)
        except NotFound:
            with contextlib.suppress(AlreadyExists):
                await self.client.create(
                    {
                        "apiVersion": "v1",
                        "kind": "Node",
                        "metadata": {
                            "name": self.node,
                            "labels": {"kubernetes.io/hostname": self.node},
                        },
                        "spec": {},
                    }
                )
            await self.client.modify("Node", self.node, None, beat, status=True)

    # --- what QEMU says, every heartbeat ------------------------------------------------------

    async def _sweep(self) -> None:
        """Notice QEMUs that died, and migrations QEMU completed that nobody recorded."""
        running_sources = {
            id(out.runner.source) for out in self.outgoing.values() if not out.task.done()
        }
        for key, local in list(self.local.items()):
            if local.vm.alive() or id(local.vm) in running_sources:
                continue  # a migration's runner reports its own source's death
            self.local.pop(key)
            self._forget(key)
            await local.vm.stop()  # releases its sockets; there is no process left to end
            reason = f"its QEMU (pid {local.vm.pid}) exited unexpectedly on {self.node}"
            log.warning("%s: VMI %s/%s: %s", self.node, *key, reason)
            await self._vmi_lost(key, reason)
        for mkey, inc in list(self.incoming.items()):
            if not inc.vm.alive():
                self._drop_incoming(mkey)
                await inc.vm.stop()
                await self._target_died(mkey)
                continue
            sample = await inc.vm.stats()
            if sample.status is not TransferStatus.COMPLETED:
                continue
            if inc.completed_at is None:
                inc.completed_at = self.clock.now()
            elif self.clock.now() - inc.completed_at >= HANDOVER_GRACE:
                await self._target_records_success(mkey, inc)

    async def _recoveries(self) -> None:
        while True:
            await self.clock.sleep(RECOVERY_WATCH)
            for mkey, inc in list(self.incoming.items()):
                try:
                    await self._offer_recovery(mkey, inc)
                except (LivemigError, httpx.HTTPError) as exc:
                    log.warning("%s: post-copy recovery of %s/%s: %s", self.node, *mkey, exc)

    async def _offer_recovery(self, mkey: Key, inc: Incoming) -> None:
        """Target side of a post-copy recovery: when QEMU says the link broke, or the source
        says the last offer did not work, listen again and say where (the source reconnects
        with ``migrate resume``)."""
        if not inc.vm.alive():
            return
        raw = self.informer.get(VMIM, mkey[1], mkey[0])
        wanted = raw is not None and MigrationStatus.of(raw).recovery_wanted
        status = (await inc.vm.stats()).status
        paused = status is TransferStatus.POSTCOPY_PAUSED
        if not paused and not wanted:
            inc.offered_at = None
            return
        now = self.clock.now()
        if not wanted and inc.offered_at is not None and now - inc.offered_at < RECOVERY_REOFFER:
            return  # the source has not tried our offer yet
        if not paused:
            # The source gave up on a reconnection QEMU still thinks is alive (a link that
            # broke during the recovery handshake): end it, to listen afresh.
            await inc.vm.pause_migration()
        address = await inc.vm.recover_incoming(f"tcp:{self.address}:0")
        inc.offered_at = now
        log.warning("%s: post-copy link of %s/%s broke; listening on %s", self.node, *mkey, address)
        await self._migration_step(mkey, lambda st: st.offer_recovery(address))

    async def _vmi_lost(self, key: Key, reason: str) -> None:
        out = await self._vmi_write(key, partial(vmi_failed, reason=reason, node=self.node))
        if out is not None and VMIStatus.of(out).phase is VMIPhase.FAILED:
            await self.events.record(out, EventType.WARNING, "Failed", reason)

    async def _target_died(self, mkey: Key) -> None:
        """Our incoming QEMU died: fail its migration if nothing moved yet. A Running one is
        the source's to end, from what its QEMU says (only it knows whether the guest was
        still whole there); it is told the target is gone, so that a post-copy waiting for a
        broken link is given up at once instead of after the give-up time."""
        raw = self.informer.get(VMIM, mkey[1], mkey[0])
        st = MigrationStatus.of(raw) if raw is not None else None
        if st is None:
            return
        if st.phase is Phase.RUNNING:
            await self._migration_step(mkey, lambda s: s.report_target_lost())
        elif st.holds_slot:
            reason = f"the target QEMU on {self.node} exited"
            await self._migration_step(mkey, lambda s: s.fail_before_transfer(reason, self._now()))

    async def _target_records_success(self, mkey: Key, inc: Incoming) -> None:
        """QEMU here completed the migration long ago and the source said nothing (its agent is
        down): record it from this side, and hand the VMI over to this node."""
        raw = self.informer.get(VMIM, mkey[1], mkey[0])
        if raw is not None and MigrationStatus.of(raw).phase is Phase.RUNNING:
            log.warning(
                "%s: migration %s/%s completed %.0f s ago and its source has not reported; "
                "recording it from the target",
                self.node,
                *mkey,
                self.clock.now() - (inc.completed_at or 0),
            )
            await self._migration_step(mkey, lambda st: st.finish(self._now(), None, None, None))
        vmi = self.informer.get(VMI, inc.vmi[1], inc.vmi[0])
        source = VMIStatus.of(vmi).node if vmi is not None else None
        if source is not None and source != self.node:
            summary = {"sourceNode": source, "targetNode": self.node, "completed": True}
            await self._vmi_write(
                inc.vmi,
                lambda o: vmi_handed_over(o, source, self.node, summary),
            )

    # --- reconcile ---------------------------------------------------------------------------

    async def reconcile(self) -> None:
        vmis = {
            (v["metadata"]["namespace"], v["metadata"]["name"]): v
            for v in self.informer.objects(VMI)
        }
        raws = {MigrationObject.of(m).key: m for m in self.informer.objects(VMIM)}
        migrations = [MigrationObject.of(m) for m in raws.values()]
        await self._targets(migrations, raws)
        # Adopt VMIs handed to us before looking for migrations to start: a VMI that just
        # arrived may already be asked to leave again.
        await self._vmis(vmis, migrations)
        await self._sources(migrations, raws)

    async def _vmis(
        self, vmis: dict[Key, dict[str, Any]], migrations: list[MigrationObject]
    ) -> None:
        busy = {m.vmi_key for m in migrations if m.status.holds_slot}
        for key, raw in vmis.items():
            status = VMIStatus.of(raw)
            if not status.on(self.node):
                continue
            if key in self.local:
                if status.phase is not VMIPhase.RUNNING:
                    # Started here by an agent that died before it said so.
                    vm = self.local[key].vm
                    process = f"QEMU pid {vm.pid}"
                    await self._vmi_write(
                        key, partial(vmi_running, node=self.node, process=process)
                    )
                await self.each.run(
                    VMI, raw, "RetuneFailed", partial(self._retune, self.local[key], raw)
                )
            elif any(inc.vmi == key for inc in self.incoming.values()):
                await self.each.run(VMI, raw, "StartFailed", partial(self._adopt_arrived, key))
            elif status.phase is VMIPhase.RUNNING:
                # It ran here, and no QEMU here runs it now: its guest is gone.
                await self._vmi_lost(key, f"no QEMU runs it on {self.node} any more")
            else:
                await self.each.run(VMI, raw, "StartFailed", partial(self._start, key, raw))
        for key in list(self.local):
            current = vmis.get(key)
            now = VMIStatus.of(current) if current is not None else None
            gone = now is None or now.node != self.node or now.finished
            leaving = any(out.runner.source is self.local[key].vm for out in self.outgoing.values())
            if gone and not leaving and key not in busy:
                local = self.local.pop(key)
                try:
                    await local.vm.stop()
                except (LivemigError, OSError) as exc:
                    log.warning("%s: stopping %s/%s: %s", self.node, *key, exc)
                self._forget(key)

    async def _start(self, key: Key, raw: dict[str, Any]) -> None:
        """Start the VMI here."""
        vmi = validate(raw)
        assert isinstance(vmi, VirtualMachineInstance)
        spec = vm_spec(vmi, raw["metadata"].get("annotations") or {}, self.disk_root)
        # In the ledger before it starts: a crash in between leaves a QEMU we can find.
        self.ledger.local[_text(key)] = LocalEntry(self.hv.handle_for(spec), spec)
        self.ledger.save()
        try:
            vm = await self.hv.start_vm(spec)
        except BaseException:
            self._forget(key)
            raise
        self.local[key] = Local(vm, (spec.dirty_rate, spec.working_set), key)
        await self._vmi_write(key, lambda o: vmi_running(o, self.node, f"QEMU pid {vm.pid}"))

    async def _retune(self, local: Local, raw: dict[str, Any]) -> None:
        """Annotation edits change the running test guest's load."""
        if local.vm.spec.disk is not None:
            return
        load = guest_load(raw["metadata"].get("annotations") or {}, local.vm.spec.memory)
        if load == local.load:
            return
        rate, ws = load
        if ws != local.load[1]:
            await local.vm.set_working_set(ws)
        if rate != local.load[0]:
            await local.vm.set_dirty_rate(rate)
        local.load = load
        self._remember(local.key, local.vm, self.ledger.local[_text(local.key)].handle)

    async def _vmi_write(
        self, key: Key, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        try:
            return await self.informer.modify(VMI, key[1], key[0], change, status=True)
        except NotFound:
            return None

    async def _adopt_arrived(self, key: Key) -> None:
        """The VMI was handed to us: if QEMU says its incoming migration completed, that
        incoming VM is the VMI now (else it is still arriving: the next pass looks again)."""
        for mkey, inc in list(self.incoming.items()):
            if inc.vmi != key:
                continue
            if (await inc.vm.stats()).status is not TransferStatus.COMPLETED:
                continue
            vm = inc.vm
            # What the guest was told at start; a bad annotation is the retune's to report.
            load = (vm.spec.dirty_rate, vm.spec.working_set) if vm.spec.disk is None else (0, 0)
            self.local[key] = Local(vm, load, key)
            self._remember(key, vm, self.ledger.incoming[_text(mkey)].handle)
            self._drop_incoming(mkey)
            if await vm.run_state() == "paused":
                await vm.resume()  # paused for the switch: it runs again, here
            await self._vmi_write(
                key, partial(vmi_running, node=self.node, process=f"QEMU pid {vm.pid}")
            )
            return

    # --- incoming ----------------------------------------------------------------------------

    async def _targets(self, migrations: list[MigrationObject], raws: dict[Key, Any]) -> None:
        for m in migrations:
            st = m.status
            if st.target_node != self.node:
                continue
            if st.phase is Phase.SCHEDULED and m.key not in self.incoming:
                await self.each.run(
                    VMIM, raws[m.key], "TargetPrepareFailed", partial(self._prepare_target, m)
                )
            elif st.phase in (Phase.PREPARING_TARGET, Phase.TARGET_READY) and (
                m.key not in self.incoming
            ):
                await self._migration_step(
                    m.key,
                    lambda s: s.fail(
                        f"the target agent on {self.node} restarted before the transfer "
                        "began; nothing moved",
                        self._now(),
                    ),
                )
            elif st.phase is Phase.FAILED and m.key in self.incoming:
                await self._stop_incoming(m.key)
        for mkey in [k for k in self.incoming if k not in raws]:
            await self._stop_incoming(mkey)  # cancelled (deleted) before it finished

    def _drop_incoming(self, mkey: Key) -> None:
        self.incoming.pop(mkey, None)
        self.ledger.incoming.pop(_text(mkey), None)
        self.ledger.save()

    async def _stop_incoming(self, mkey: Key) -> None:
        """Stop a migration's target QEMU, unless QEMU says the guest arrived complete: then it
        is the VM (its source is stopped) and it waits to be handed over."""
        inc = self.incoming[mkey]
        with contextlib.suppress(HypervisorError):
            if inc.vm.alive() and (await inc.vm.stats()).status is TransferStatus.COMPLETED:
                return
        self._drop_incoming(mkey)
        try:
            await inc.vm.stop()
        except (LivemigError, OSError) as exc:
            log.warning("%s: stopping the incoming VM of %s/%s: %s", self.node, *mkey, exc)

    async def _prepare_target(self, m: MigrationObject) -> None:
        out = await self._migration_step(m.key, lambda st: st.preparing(self._now()))
        if out is None or MigrationStatus.of(out).phase is not Phase.PREPARING_TARGET:
            return
        try:
            vmi_raw = self.informer.get(VMI, m.vmi_name, m.namespace)
            if vmi_raw is None:
                raise NotFound(f"VirtualMachineInstance {m.namespace}/{m.vmi_name} is gone")
            vmi = validate(vmi_raw)
            assert isinstance(vmi, VirtualMachineInstance)
            spec = vm_spec(vmi, vmi_raw["metadata"].get("annotations") or {}, self.disk_root)
            config = MigrationConfiguration.from_dict(dict(m.status.configuration or {}))
            handle = self.hv.handle_for(spec, incoming=True)
            # In the ledger before QEMU starts: a crash in between leaves a QEMU we can find.
            self.ledger.incoming[_text(m.key)] = IncomingEntry(_text(m.vmi_key), handle, spec)
            self.ledger.save()
            try:
                vm = await self.hv.start_incoming(spec, f"tcp:{self.address}:0", params_for(config))
            except BaseException:
                self._drop_incoming(m.key)
                raise
        except (LivemigError, KeyError) as exc:
            why = f"target {self.node} could not prepare: {exc}"
            await self._migration_step(m.key, lambda st: st.fail(why, self._now()))
            return
        self.incoming[m.key] = Incoming(vm, m.vmi_key)
        address = vm.listen_uri or ""
        await self._migration_step(m.key, lambda st: st.target_ready(address, self._now()))

    # --- outgoing ----------------------------------------------------------------------------

    async def _sources(self, migrations: list[MigrationObject], raws: dict[Key, Any]) -> None:
        for m in migrations:
            st = m.status
            if st.source_node != self.node:
                continue
            out = self.outgoing.get(m.key)
            if out is not None:
                if out.task.done():
                    continue
                if st.target_lost:
                    out.runner.target_lost()
                if st.phase is Phase.FAILED or st.abort_requested:
                    # Failed by someone else (its VMI was deleted), or asked to abort.
                    with contextlib.suppress(CancelRefused):
                        out.runner.cancel(st.abort_requested or st.reason)
                continue
            if st.phase is Phase.TARGET_READY:
                await self.each.run(
                    VMIM, raws[m.key], "FailedMigration", partial(self._start_outgoing, m)
                )
            elif st.phase is Phase.RUNNING and m.vmi_key in self.local:
                # Running, and no runner here: this agent restarted. QEMU knows the rest.
                await self.each.run(
                    VMIM, raws[m.key], "FailedMigration", partial(self._resume_outgoing, m)
                )
            elif st.phase is Phase.RUNNING:
                # Running from here, and its source QEMU died while no agent watched it.
                why = f"the source QEMU of {m.namespace}/{m.vmi_name} on {self.node} is gone"
                await self._migration_step(m.key, partial(_fail_now, why, self._now()))
        for mkey, out in self.outgoing.items():
            if mkey not in raws and not out.task.done():
                try:
                    out.runner.cancel()  # the migration was deleted: cancel it
                except CancelRefused as exc:
                    log.warning("%s", exc)

    def _runner(self, m: MigrationObject, local: Local, target_uri: str) -> MigrationRunner:
        config = MigrationConfiguration.from_dict(dict(m.status.configuration or {}))
        return MigrationRunner(
            local.vm,
            target_uri,
            config,
            local.vm.spec.memory,
            self.clock,
            on_sample=lambda sample, _state: self._progress(m.key, sample),
            on_switch=partial(self._record_switch, m.key),
            postcopy_give_up=self.postcopy_give_up,
            recovery=_ThroughTheApi(self, m.key),
        )

    async def _start_outgoing(self, m: MigrationObject) -> None:
        local = self.local.get(m.vmi_key)
        if local is None:
            # Our lists are not one snapshot: the VMI may have just been handed to us.
            fresh = await self.client.get(VMI, m.vmi_name, m.namespace)
            if VMIStatus.of(fresh).node != self.node:
                await self._migration_step(
                    m.key, lambda st: st.fail(f"the VM is not running on {self.node}", self._now())
                )
            return  # not ours to run yet; the next pass looks again
        started = await self._migration_step(m.key, lambda st: st.start(self._now()))
        if started is None or MigrationStatus.of(started).phase is not Phase.RUNNING:
            return  # cancelled or failed meanwhile
        runner = self._runner(m, local, m.status.target_address or "")
        self.outgoing[m.key] = Outgoing(
            runner, asyncio.create_task(self._run_outgoing(m, runner, None))
        )

    async def _resume_outgoing(self, m: MigrationObject) -> None:
        local = self.local[m.vmi_key]
        if (await local.vm.stats()).status is TransferStatus.NONE:
            await self._migration_step(
                m.key,
                lambda st: st.fail(
                    f"the source agent on {self.node} restarted before the transfer began; "
                    "nothing moved",
                    self._now(),
                ),
            )
            return
        log.info("%s: taking over migration %s/%s from QEMU", self.node, *m.key)
        runner = self._runner(m, local, m.status.target_address or "")
        mode = m.status.mode or MigrationMode.PRE_COPY
        self.outgoing[m.key] = Outgoing(
            runner, asyncio.create_task(self._run_outgoing(m, runner, mode))
        )

    async def _record_switch(self, mkey: Key, mode: MigrationMode) -> bool | None:
        """Record the switch to ``mode`` before QEMU is told: False if the migration is gone
        or ended (cancelled: do not switch), None if the API cannot be reached now."""
        try:
            out = await self._migration_step(mkey, lambda st: st.switch_mode(mode))
        except (httpx.TransportError, LivemigError) as exc:
            log.warning("%s: cannot record %s for %s/%s yet: %s", self.node, mode, *mkey, exc)
            return None
        if out is None:
            return False
        st = MigrationStatus.of(out)
        return st.phase is Phase.RUNNING and st.mode is mode

    def _progress(self, mkey: Key, sample: TransferStats) -> None:
        """Report the transfer at most once a second, without holding up the runner."""
        out = self.outgoing.get(mkey)
        if out is None:
            return
        broken = sample.status is TransferStatus.POSTCOPY_PAUSED
        if broken != out.link_broken:
            out.link_broken = broken
            self._link_event(mkey, broken)
        if out.report is not None and not out.report.done():
            return
        if self.clock.now() - out.last_report < REPORT_INTERVAL:
            return
        out.last_report = self.clock.now()
        figures = Figures.of(sample)
        out.report = asyncio.create_task(
            self._migration_step(mkey, lambda st: st.progress(figures))
        )

    def _link_event(self, mkey: Key, broken: bool) -> None:
        """Say on the migration that its post-copy link broke, or came back."""
        raw = self.informer.get(VMIM, mkey[1], mkey[0])
        if raw is None:
            return
        if broken:
            event = (
                EventType.WARNING,
                "PostCopyPaused",
                "the migration link broke in post-copy: both QEMUs hold their half of the guest "
                f"and wait for it to come back (given up after {self.postcopy_give_up:.0f} s)",
            )
        else:
            event = (EventType.NORMAL, "PostCopyResumed", "the post-copy link is back")
        task = asyncio.create_task(self.events.record(raw, *event))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _run_outgoing(
        self, m: MigrationObject, runner: MigrationRunner, adopt: MigrationMode | None
    ) -> None:
        try:
            result = await runner.run(adopt)
        except LivemigError as exc:
            result = MigrationResult(
                Outcome.FAILED, runner.state.mode, f"the migration broke: {exc}", 0.0, None, (), ()
            )
        finally:
            out = self.outgoing.get(m.key)
            if out is not None and out.report is not None:
                with contextlib.suppress(Exception):
                    await out.report
        record = _outcome_record(m, result)
        # In the ledger before it is sent: written whatever the API server is going through,
        # even by this agent's next life.
        self.ledger.outbox[_text(m.key)] = record
        self.ledger.save()
        await self._deliver(_text(m.key), record)
        # Only now: until the outcome is written, a pass must not take this for a migration
        # whose runner was lost.
        self.outgoing.pop(m.key, None)

    async def _deliver_outbox(self) -> None:
        for text, record in list(self.ledger.outbox.items()):
            await self._deliver(text, record)

    async def _deliver(self, text: str, record: dict[str, Any]) -> None:
        """Write an outcome, then what follows from it, until the API server has taken it."""
        mkey, vmi_key = _key(text), _key(record["vmi"])
        ok = record["outcome"] == Outcome.SUCCEEDED
        # The outcome first: it frees the parallel slot for the next pending migration.
        recorded = await self._persist(partial(self._finish, mkey, record), "record " + text)
        if ok and recorded:
            # The target adopts the VMI once it sees the hand-over and its QEMU completed.
            summary = record["summary"]
            await self._persist(
                partial(
                    self._vmi_write,
                    vmi_key,
                    lambda o: vmi_handed_over(o, self.node, record["target"], summary),
                ),
                "hand over " + record["vmi"],
            )
            await self._stop_local(vmi_key)  # the source copy is gone
        elif ok:
            log.error(
                "%s: migration %s completed after it was failed; keeping the source copy "
                "for an operator to decide",
                self.node,
                text,
            )
        elif record["guest_lost"]:
            reason = record["reason"]
            await self._persist(partial(self._vmi_lost, vmi_key, reason), "fail " + record["vmi"])
            await self._stop_local(vmi_key)  # paused with half a guest, or dead: not the VM
        self.ledger.outbox.pop(text, None)
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

    async def _finish(self, mkey: Key, record: dict[str, Any]) -> bool:
        """Record the outcome; False if it was already decided otherwise."""
        now = self._now()
        ok = record["outcome"] == Outcome.SUCCEEDED
        figures = Figures(**record["figures"]) if record["figures"] else None
        recorded = False

        def end(st: MigrationStatus) -> MigrationStatus:
            nonlocal recorded
            if st.finished:
                # Seeing our own success means an earlier write landed (its answer was lost).
                recorded = st.succeeded and ok
                return st
            recorded = True
            if ok:
                return st.finish(
                    now,
                    figures,
                    record["downtime_ms"],
                    record["duration"],
                    MigrationMode(record["mode"]),
                )
            if record["reason"] == USER_CANCEL and st.can_cancel:
                return st.cancel(now, figures)
            return st.fail(record["reason"], now, figures, record["duration"])

        try:
            await self._migration_step(mkey, end, missing_ok=False)
        except NotFound:
            return True  # deleted (cancelled) meanwhile: the runner's result stands
        return recorded

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


def _fail_now(reason: str, now: datetime, st: MigrationStatus) -> MigrationStatus:
    return st.fail(reason, now)


class _ThroughTheApi:
    """A source's side of the post-copy recovery protocol (migration.Recovery): the target's
    offers and the source's "spent" notes travel in the migration's status."""

    def __init__(self, agent: NodeAgent, mkey: Key) -> None:
        self.agent = agent
        self.mkey = mkey

    async def offer(self) -> tuple[int, str] | None:
        raw = self.agent.informer.get(VMIM, self.mkey[1], self.mkey[0])
        st = MigrationStatus.of(raw) if raw is not None else None
        if st is None or not st.recoveries or st.recovery_address is None:
            return None
        return st.recoveries, st.recovery_address

    async def spent(self, number: int) -> None:
        await self.agent._migration_step(self.mkey, lambda st: st.spend_recovery(number))


def _outcome_record(m: MigrationObject, result: MigrationResult) -> dict[str, Any]:
    """What the API must be told about a migration that ended here (JSON, for the ledger)."""
    last = result.history[-1] if result.history else None
    figures = Figures.of(last) if last is not None else None
    summary = {
        "sourceNode": m.status.source_node,
        "targetNode": m.status.target_node,
        "mode": result.mode.value,
        "completed": result.succeeded,
        "downtimeMs": result.downtime_ms,
        "durationSeconds": round(result.duration, 3),
    }
    return {
        "vmi": _text(m.vmi_key),
        "target": m.status.target_node,
        "outcome": result.outcome.value,
        "reason": result.failure_reason,
        "mode": result.mode.value,
        "figures": None if figures is None else asdict(figures),
        "downtime_ms": result.downtime_ms,
        "duration": round(result.duration, 3),
        "guest_lost": result.guest_lost,
        "summary": summary,
    }
