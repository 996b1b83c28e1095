"""The node agent: runs this node's VMIs as QEMU processes, prepares incoming migrations, runs
outgoing ones with the migration runner, reports, and hands VMIs over when done.

What runs where is recorded in ``STATE_DIR/vms.json`` so a restarted agent re-adopts its QEMU
processes instead of killing them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx

from livemig.api.builders import DIRTY_RATE, TEST_GUEST_IMAGE, WORKING_SET
from livemig.api.loading import validate
from livemig.api.models import VirtualMachineInstance
from livemig.api.quantity import parse_quantity, short_bytes
from livemig.api.status import Phase, condition, set_phase, timestamp
from livemig.client import ApiClient
from livemig.clock import Clock
from livemig.errors import (
    AlreadyExists,
    CancelRefused,
    HypervisorError,
    InvalidInput,
    LivemigError,
    NotFound,
    QuantityError,
)
from livemig.events import EventRecorder
from livemig.hypervisor import TransferStats, VMSpec, testguest
from livemig.hypervisor.disks import DiskRefused, confine
from livemig.hypervisor.qemu import QemuHypervisor, QemuVM
from livemig.informer import LIFECYCLE, Informer, reconcile_forever
from livemig.migration import USER_CANCEL, MigrationResult, MigrationRunner, params_for
from livemig.perobject import PerObject
from livemig.policy import MigrationConfiguration
from livemig.tasks import cancel_and_wait

log = logging.getLogger(__name__)

VMI = "VirtualMachineInstance"
VMIM = "VirtualMachineInstanceMigration"
T = TypeVar("T")
DEFAULT_MEMORY = 128 * 2**20
REPORT_INTERVAL = 1.0


def vm_spec(vmi: VirtualMachineInstance, annotations: dict[str, str], disk_root: Path) -> VMSpec:
    """How to run a VMI: the test guest (containerDisk livemig/test-guest) or a hostDisk, which
    must be a regular file inside ``disk_root`` (DiskRefused names the path and the root)."""
    memory = vmi.spec.memory_bytes() or DEFAULT_MEMORY
    cpu = vmi.spec.domain.cpu if vmi.spec.domain else None
    vcpus = cpu.vcpus if cpu else 1
    name = f"{vmi.namespace}_{vmi.name}"
    for volume in vmi.spec.volumes:
        if volume.host_disk is not None:
            try:
                disk = confine(volume.host_disk.path, disk_root)
            except DiskRefused as exc:
                raise DiskRefused(f"volume {volume.name}: {exc}") from None
            return VMSpec(name, memory, vcpus, disk=str(disk))
        if volume.container_disk is not None and volume.container_disk.image == TEST_GUEST_IMAGE:
            rate, ws = guest_load(annotations, memory)
            return VMSpec(name, memory, vcpus, dirty_rate=rate, working_set=ws)
    raise HypervisorError(
        f"{vmi.ref}: no bootable volume: give a hostDisk volume (a path every node can read) "
        f"or a containerDisk with image {TEST_GUEST_IMAGE}"
    )


#: The test guest counts pages per second in 32 bits; far beyond any real dirty rate anyway.
MAX_DIRTY_RATE = 64 * 2**30


def guest_load(annotations: dict[str, str], memory: int) -> tuple[int, int]:
    """(dirty rate, working set) in bytes from the VMI's annotations; InvalidInput naming the
    annotation when one is not a usable quantity."""
    default_ws = min(64 * 2**20, testguest.max_working_set(memory))
    rate = _load_annotation(annotations, DIRTY_RATE, "0", MAX_DIRTY_RATE)
    ws = _load_annotation(annotations, WORKING_SET, str(default_ws), None)
    return rate, min(ws, testguest.max_working_set(memory))


def _load_annotation(annotations: dict[str, str], key: str, default: str, limit: int | None) -> int:
    raw = annotations.get(key, default)
    try:
        value = parse_quantity(raw).to_bytes()
    except QuantityError as exc:
        raise InvalidInput(f"annotation {key}: {exc}") from exc
    if value < 0:
        raise InvalidInput(f"annotation {key}: {raw!r} is negative")
    if limit is not None and value > limit:
        raise InvalidInput(f"annotation {key}: {raw!r} is above {short_bytes(limit)}")
    return value


@dataclass
class Outgoing:
    runner: MigrationRunner
    task: asyncio.Task[None]
    last_report: float = 0.0
    report: asyncio.Task[Any] | None = None


@dataclass
class Local:
    """A VMI running here, and what its guest was last told."""

    vm: QemuVM
    load: tuple[int, int] = (0, 0)
    key: tuple[str, str] = ("", "")


@dataclass
class Ledger:
    """What the state folder says runs here: VMI key → QEMU folder (and its VMSpec)."""

    path: Path
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Ledger:
        try:
            return cls(path, json.loads(path.read_text()))
        except (OSError, ValueError):
            return cls(path)

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.entries, indent=1))
        tmp.replace(self.path)


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
        hypervisor: QemuHypervisor | None = None,
        backoff: tuple[float, float] = (1.0, 300.0),
        disk_root: Path | None = None,
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
        self.hv = hypervisor or QemuHypervisor(
            self.state_dir / "vms", clock=clock, disk_root=self.disk_root
        )
        self.local: dict[tuple[str, str], Local] = {}
        self.incoming: dict[tuple[str, str], QemuVM] = {}  # by migration key
        self.outgoing: dict[tuple[str, str], Outgoing] = {}
        self.ledger = Ledger.load(self.state_dir / "vms.json")
        self.informer = Informer(client, (VMI, VMIM), clock)
        self.events = EventRecorder(client, f"livemig-agent/{node}", clock)
        self.each = PerObject(self.informer, self.events, clock, *backoff)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.wall(), UTC)

    # --- life cycle --------------------------------------------------------------------------

    async def run(self) -> None:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.disk_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        await self._report_node()
        await self._readopt()
        beat = asyncio.create_task(self._heartbeats())
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
            await cancel_and_wait(beat)

    async def shutdown(self, stop_vms: bool) -> None:
        """Stop our own tasks; with ``stop_vms`` also every QEMU (else they keep running)."""
        for out in list(self.outgoing.values()):
            await cancel_and_wait(out.task)
        vms = [loc.vm for loc in self.local.values()] + list(self.incoming.values())
        for vm in vms:
            if stop_vms:
                await vm.stop()
            else:
                await vm.detach()
        if stop_vms:
            self.ledger.entries.clear()
            self.ledger.save()

    async def _readopt(self) -> None:
        for key, entry in list(self.ledger.entries.items()):
            ns, name = key.split("/", 1)
            spec = VMSpec(**{**entry["spec"], "extra_args": tuple(entry["spec"]["extra_args"])})
            vm = None
            for _ in range(3):  # QEMU may still be hanging up on the previous agent
                try:
                    vm = await QemuVM.attach(spec, Path(entry["folder"]), self.clock)
                    break
                except HypervisorError as exc:
                    log.warning("%s: cannot re-adopt %s yet: %s", self.node, key, exc)
            if vm is None:
                log.error("%s: giving up on %s; its QEMU is left as it is", self.node, key)
                del self.ledger.entries[key]
                continue
            vm.working_set = spec.working_set
            self.local[(ns, name)] = Local(vm, (spec.dirty_rate, spec.working_set), (ns, name))
        self.ledger.save()

    def _remember(self, key: tuple[str, str], vm: QemuVM) -> None:
        spec = vm.spec
        self.ledger.entries[f"{key[0]}/{key[1]}"] = {
            "folder": str(vm.folder),
            "spec": {
                "name": spec.name,
                "memory": spec.memory,
                "vcpus": spec.vcpus,
                "disk": spec.disk,
                "dirty_rate": spec.dirty_rate,
                "working_set": vm.working_set,
                "extra_args": list(spec.extra_args),
            },
        }
        self.ledger.save()

    def _forget(self, key: tuple[str, str]) -> None:
        self.ledger.entries.pop(f"{key[0]}/{key[1]}", None)
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

    # --- reconcile ---------------------------------------------------------------------------

    async def reconcile(self) -> None:
        vmis, migrations = self.informer.objects(VMI), self.informer.objects(VMIM)
        by_key = {(v["metadata"]["namespace"], v["metadata"]["name"]): v for v in vmis}
        await self._targets(migrations)
        # Adopt VMIs handed to us before looking for migrations to start: a VMI that just
        # arrived may already be asked to leave again.
        await self._vmis(by_key, migrations)
        await self._sources(migrations, by_key)

    async def _vmis(
        self, vmis: dict[tuple[str, str], dict[str, Any]], migrations: list[dict[str, Any]]
    ) -> None:
        busy = {
            (m["metadata"]["namespace"], m["spec"]["vmiName"])
            for m in migrations
            if (m.get("status") or {}).get("phase")
            in (Phase.SCHEDULED, Phase.PREPARING_TARGET, Phase.TARGET_READY, Phase.RUNNING)
        }
        for key, raw in vmis.items():
            status = raw.get("status") or {}
            if status.get("nodeName") != self.node:
                continue
            if key in self.local:
                await self.each.run(
                    VMI, raw, "RetuneFailed", partial(self._retune, self.local[key], raw)
                )
                continue
            if status.get("phase") in ("Running", "Failed"):
                # Ran here before a restart that lost it, or could not start (older
                # versions marked that Failed) — unless a finished migration brings it.
                await self.each.run(
                    VMI, raw, "StartFailed", partial(self._adopt_migrated, key, raw, migrations)
                )
                continue
            await self.each.run(VMI, raw, "StartFailed", partial(self._start, key, raw, migrations))
        for key in list(self.local):
            current = vmis.get(key)
            elsewhere = (
                current is None or (current.get("status") or {}).get("nodeName") != self.node
            )
            leaving = any(
                k[0] == key[0] and out.runner.source is self.local[key].vm
                for k, out in self.outgoing.items()
            )
            if elsewhere and not leaving and key not in busy:
                local = self.local.pop(key)
                try:
                    await local.vm.stop()
                except (LivemigError, OSError) as exc:
                    log.warning("%s: stopping %s/%s: %s", self.node, *key, exc)
                self._forget(key)

    async def _start(
        self, key: tuple[str, str], raw: dict[str, Any], migrations: list[dict[str, Any]]
    ) -> None:
        """Start the VMI here (or take over the incoming VM a finished migration made)."""
        if await self._adopt_migrated(key, raw, migrations):
            return
        vmi = validate(raw)
        assert isinstance(vmi, VirtualMachineInstance)
        spec = vm_spec(vmi, raw["metadata"].get("annotations") or {}, self.disk_root)
        vm = await self.hv.start_vm(spec)
        self.local[key] = Local(vm, (spec.dirty_rate, spec.working_set), key)
        self._remember(key, vm)
        await self._vmi_status(
            key, {"phase": "Running"}, ("Ready", "True", "Running", f"QEMU pid {vm.pid}")
        )

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
        self._remember(local.key, local.vm)

    async def _vmi_status(
        self,
        key: tuple[str, str],
        fields: dict[str, Any],
        cond: tuple[str, str, str, str] | None = None,
    ) -> None:
        def change(o: dict[str, Any]) -> dict[str, Any]:
            st = o.setdefault("status", {})
            st.update(fields)
            if cond:
                condition(st, *cond)
            return o

        with contextlib.suppress(NotFound):
            await self.informer.modify(VMI, key[1], key[0], change, status=True)

    async def _adopt_migrated(
        self, key: tuple[str, str], raw: dict[str, Any], migrations: list[dict[str, Any]]
    ) -> bool:
        """A VMI handed to us by a finished migration: its incoming VM is now the VMI."""
        for m in migrations:
            mkey = (m["metadata"]["namespace"], m["metadata"]["name"])
            if mkey in self.incoming and m["spec"]["vmiName"] == key[1] and mkey[0] == key[0]:
                status = m.get("status") or {}
                if status.get("phase") != Phase.SUCCEEDED:
                    return False
                vm = self.incoming.pop(mkey)
                # What the guest was told at start; a bad annotation is the retune's to report.
                load = (vm.spec.dirty_rate, vm.spec.working_set) if vm.spec.disk is None else (0, 0)
                self.local[key] = Local(vm, load, key)
                if await vm.run_state() == "paused":
                    await vm.resume()  # paused for the switch: it runs again, here
                self._remember(key, vm)
                return True
        return False

    # --- incoming ----------------------------------------------------------------------------

    async def _targets(self, migrations: list[dict[str, Any]]) -> None:
        present = set()
        for m in migrations:
            mkey = (m["metadata"]["namespace"], m["metadata"]["name"])
            status = m.get("status") or {}
            state = status.get("migrationState") or {}
            present.add(mkey)
            if state.get("targetNode") != self.node:
                continue
            phase = status.get("phase")
            if phase == Phase.SCHEDULED and mkey not in self.incoming:
                await self.each.run(
                    VMIM, m, "TargetPrepareFailed", partial(self._prepare_target, m, mkey, state)
                )
            elif phase == Phase.FAILED and mkey in self.incoming:
                await self._stop_incoming(mkey)
        for mkey in [k for k in self.incoming if k not in present]:
            await self._stop_incoming(mkey)  # cancelled (deleted) before it finished

    async def _stop_incoming(self, mkey: tuple[str, str]) -> None:
        vm = self.incoming.pop(mkey)
        try:
            await vm.stop()
        except (LivemigError, OSError) as exc:
            log.warning("%s: stopping the incoming VM of %s/%s: %s", self.node, *mkey, exc)

    async def _prepare_target(
        self, m: dict[str, Any], mkey: tuple[str, str], state: dict[str, Any]
    ) -> None:
        name = m["metadata"]["name"]
        ns = mkey[0]
        await self._migration_status(
            ns,
            name,
            lambda o: (
                set_phase(o, Phase.PREPARING_TARGET, self._now())
                if o["status"]["phase"] == Phase.SCHEDULED
                else None
            ),
        )
        try:
            vmi_raw = self.informer.get(VMI, m["spec"]["vmiName"], ns)
            if vmi_raw is None:
                raise NotFound(f"VirtualMachineInstance {ns}/{m['spec']['vmiName']} is gone")
            vmi = validate(vmi_raw)
            assert isinstance(vmi, VirtualMachineInstance)
            spec = vm_spec(vmi, vmi_raw["metadata"].get("annotations") or {}, self.disk_root)
            config = MigrationConfiguration.from_dict(state["migrationConfiguration"])
            vm = await self.hv.start_incoming(spec, f"tcp:{self.address}:0", params_for(config))
        except (LivemigError, KeyError) as exc:
            await self._finish(ns, name, None, f"target {self.node} could not prepare: {exc}")
            return
        self.incoming[mkey] = vm

        def ready(o: dict[str, Any]) -> dict[str, Any] | None:
            if o["status"].get("phase") != Phase.PREPARING_TARGET:
                return None
            o["status"]["migrationState"]["targetNodeAddress"] = vm.listen_uri
            return set_phase(o, Phase.TARGET_READY, self._now())

        await self._migration_status(ns, name, ready)

    # --- outgoing ----------------------------------------------------------------------------

    async def _sources(
        self, migrations: list[dict[str, Any]], vmis: dict[tuple[str, str], dict[str, Any]]
    ) -> None:
        present = set()
        for m in migrations:
            mkey = (m["metadata"]["namespace"], m["metadata"]["name"])
            present.add(mkey)
            status = m.get("status") or {}
            state = status.get("migrationState") or {}
            if state.get("sourceNode") != self.node:
                continue
            out = self.outgoing.get(mkey)
            if out is not None:
                if status.get("phase") == Phase.FAILED and not out.task.done():
                    # The controller gave up on it (a node stopped reporting): abort.
                    with contextlib.suppress(CancelRefused):
                        out.runner.cancel()
                continue
            if status.get("phase") == Phase.TARGET_READY:
                await self.each.run(
                    VMIM,
                    m,
                    "FailedMigration",
                    partial(self._start_outgoing, m, mkey, state, migrations),
                )
        for mkey, out in self.outgoing.items():
            if mkey not in present and not out.task.done():
                try:
                    out.runner.cancel()  # the migration was deleted: cancel it
                except CancelRefused as exc:
                    log.warning("%s", exc)

    async def _start_outgoing(
        self,
        m: dict[str, Any],
        mkey: tuple[str, str],
        state: dict[str, Any],
        migrations: list[dict[str, Any]],
    ) -> None:
        ns, name = mkey
        vmi_key = (ns, m["spec"]["vmiName"])
        local = self.local.get(vmi_key)
        if local is None:
            # Our lists are not one snapshot: the VMI may have just been handed to us.
            fresh = await self.client.get(VMI, vmi_key[1], ns)
            if (fresh.get("status") or {}).get("nodeName") != self.node:
                await self._finish(ns, name, None, f"the VM is not running on {self.node}")
                return
            if not await self._adopt_migrated(vmi_key, fresh, migrations):
                return  # not ours to run yet; the next pass looks again
            local = self.local[vmi_key]
        config = MigrationConfiguration.from_dict(state["migrationConfiguration"])
        now = self._now()

        def running(o: dict[str, Any]) -> dict[str, Any] | None:
            if o["status"].get("phase") != Phase.TARGET_READY:
                return None
            o["status"]["migrationState"]["startTimestamp"] = timestamp(now)
            return set_phase(o, Phase.RUNNING, now)

        started = await self._migration_status(ns, name, running)
        if started is None or started["status"].get("phase") != Phase.RUNNING:
            return  # cancelled or failed meanwhile
        runner = MigrationRunner(
            local.vm,
            state["targetNodeAddress"],
            config,
            local.vm.spec.memory,
            self.clock,
            on_sample=lambda sample, _state: self._progress(mkey, sample),
        )
        out = Outgoing(runner, asyncio.create_task(self._run_outgoing(mkey, m, runner)))
        self.outgoing[mkey] = out

    def _progress(self, mkey: tuple[str, str], sample: TransferStats) -> None:
        """Report the transfer at most once a second, without holding up the runner."""
        out = self.outgoing.get(mkey)
        if out is None or (out.report is not None and not out.report.done()):
            return
        if self.clock.now() - out.last_report < REPORT_INTERVAL:
            return
        out.last_report = self.clock.now()
        figures = _figures(sample, out.runner)

        def report(o: dict[str, Any]) -> dict[str, Any] | None:
            if o["status"].get("phase") != Phase.RUNNING:
                return None
            o["status"]["migrationState"].update(figures)
            return o

        out.report = asyncio.create_task(self._migration_status(mkey[0], mkey[1], report))

    async def _run_outgoing(
        self, mkey: tuple[str, str], m: dict[str, Any], runner: MigrationRunner
    ) -> None:
        try:
            result = await runner.run()
        except LivemigError as exc:
            await self._persist(
                partial(self._finish, mkey[0], mkey[1], None, f"migration broke: {exc}")
            )
            self.outgoing.pop(mkey, None)
            return
        finally:
            out = self.outgoing.get(mkey)
            if out is not None and out.report is not None:
                with contextlib.suppress(Exception):
                    await out.report
        target = (m["status"]["migrationState"] or {}).get("targetNode")
        vmi_key = (mkey[0], m["spec"]["vmiName"])
        # The outcome first: it frees the parallel slot for the next pending migration. Both it
        # and the hand-over must be written whatever the API server is going through: the VM
        # has already moved.
        recorded = await self._persist(
            partial(self._finish, mkey[0], mkey[1], result, result.failure_reason)
        )
        self.outgoing.pop(mkey, None)
        if result.succeeded and recorded:
            # The target adopts the VMI once it sees both the outcome and the hand-over.
            state = _final_state(result, runner)
            await self._persist(
                partial(self._vmi_status, vmi_key, {"nodeName": target, "migrationState": state})
            )
            if vmi_key in self.local:
                local = self.local.pop(vmi_key)
                await local.vm.stop()  # the source copy is gone
                self._forget(vmi_key)
        elif result.succeeded:
            log.error(
                "%s: migration %s completed after the controller failed it; keeping the "
                "source copy for an operator to decide",
                self.node,
                mkey,
            )

    async def _persist(self, write: Callable[[], Awaitable[T]]) -> T:
        """``write()`` until the API server takes it (transport failures are retried, with a
        backoff doubling to 10 s); a refusal other than that is raised."""
        delay = 0.5
        while True:
            try:
                return await write()
            except httpx.TransportError as exc:
                log.warning(
                    "%s: cannot reach the API server (%s); retrying in %.0f s",
                    self.node,
                    type(exc).__name__,
                    delay,
                )
                await self.clock.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _finish(
        self, ns: str, name: str, result: MigrationResult | None, reason: str | None
    ) -> bool:
        """Record the outcome; False if it was already decided (the controller failed it)."""
        now = self._now()
        recorded = False

        def end(o: dict[str, Any]) -> dict[str, Any] | None:
            nonlocal recorded
            st = o.setdefault("status", {})
            if st.get("phase") in (Phase.SUCCEEDED, Phase.FAILED):
                # Only this agent records success: seeing it means our own earlier write
                # landed (its answer was lost to a timeout). A failure may be the controller's.
                recorded = st.get("phase") == Phase.SUCCEEDED and bool(result and result.succeeded)
                return None
            recorded = True
            state = st.setdefault("migrationState", {})
            ok = result is not None and result.succeeded
            state.update(
                endTimestamp=timestamp(now),
                completed=ok,
                failed=not ok,
                failureReason=None if ok else reason,
            )
            if result is not None:
                state.update(_final_state(result, None))
                if reason == USER_CANCEL:
                    state["abortStatus"] = "Succeeded"
            return set_phase(o, Phase.SUCCEEDED if ok else Phase.FAILED, now)

        try:
            await self.informer.modify(VMIM, name, ns, end, status=True)
        except NotFound:
            return True  # deleted (cancelled) meanwhile: the runner's result stands
        return recorded

    async def _migration_status(self, ns: str, name: str, change: Any) -> dict[str, Any] | None:
        try:
            return await self.informer.modify(VMIM, name, ns, change, status=True)
        except NotFound:
            return None


def _figures(sample: TransferStats, runner: MigrationRunner) -> dict[str, Any]:
    return {
        "mode": runner.state.mode.value,
        "dataTotalBytes": sample.total_bytes,
        "dataProcessedBytes": sample.processed_bytes,
        "dataRemainingBytes": sample.remaining_bytes,
        "dirtyRateBytesPerSecond": round(sample.dirty_rate),
        "transferRateBytesPerSecond": round(sample.transfer_rate),
        "iterations": sample.iteration,
        "elapsedSeconds": round(sample.elapsed, 3),
    }


def _final_state(result: MigrationResult, runner: MigrationRunner | None) -> dict[str, Any]:
    last = result.history[-1] if result.history else None
    state: dict[str, Any] = {
        "mode": result.mode.value,
        "downtimeMs": result.downtime_ms,
        "durationSeconds": round(result.duration, 3),
    }
    if last is not None:
        state.update(
            {k: v for k, v in _figures(last, runner).items() if k != "mode"}
            if runner is not None
            else {
                "dataTotalBytes": last.total_bytes,
                "dataProcessedBytes": last.processed_bytes,
                "dataRemainingBytes": last.remaining_bytes,
                "iterations": last.iteration,
            }
        )
    return state
