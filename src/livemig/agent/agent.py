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
from functools import partial
from typing import Any

import httpx

from livemig.agent.base import VMI, VMIM, Incoming, Key, Local, key_text, log, parse_key
from livemig.agent.ledger import IncomingEntry, LocalEntry
from livemig.agent.source import SourceSide
from livemig.agent.target import HANDOVER_GRACE, TargetSide
from livemig.agent.vmspec import guest_load, vm_spec
from livemig.api.lifecycle import MigrationObject
from livemig.api.loading import validate
from livemig.api.models import VirtualMachineInstance
from livemig.api.status import condition, timestamp
from livemig.api.vmi_status import VMIPhase, VMIStatus, vmi_running
from livemig.errors import AlreadyExists, HypervisorError, LivemigError, NotFound, VMGone
from livemig.hypervisor import VM, TransferStatus
from livemig.informer import LIFECYCLE, reconcile_forever
from livemig.tasks import cancel_and_wait

__all__ = ["NodeAgent", "guest_load", "vm_spec"]


class NodeAgent(SourceSide, TargetSide):
    async def run(self) -> None:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.disk_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        await self._persist(self._report_node, "wait for the API server")
        lost = await self._readopt()
        await self._deliver_outbox()  # before judging lost VMs: a hand-over may be among them
        for key, reason in lost:
            await self._persist(partial(self._vmi_lost, key, reason), f"fail {key_text(key)}")
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
        await self.events.close()

    async def _attach(self, entry: LocalEntry | IncomingEntry, what: str) -> VM | None:
        for _ in range(3):  # QEMU may still be hanging up on the previous agent
            try:
                vm = await self.hv.attach(entry.spec, entry.handle)
            except VMGone as exc:
                log.warning("%s: cannot re-adopt %s: %s", self.node, what, exc)
                return None
            except HypervisorError as exc:
                log.warning("%s: cannot re-adopt %s yet: %s", self.node, what, exc)
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
                    (
                        parse_key(text),
                        f"its QEMU was gone when the node agent on {self.node} restarted",
                    )
                )
                continue
            spec = entry.spec
            self.local[parse_key(text)] = Local(
                vm, (spec.dirty_rate, spec.working_set), parse_key(text)
            )
            with contextlib.suppress(HypervisorError):
                if await vm.run_state() == "prelaunch":
                    # Started stopped (-S), and this agent died before it said "run".
                    await vm.resume()
        for text, incoming in list(self.ledger.incoming.items()):
            vm = await self._attach(incoming, f"the incoming VM of {text}")
            if vm is None:
                del self.ledger.incoming[text]  # its migration's source sees the stream broken
                continue
            self.incoming[parse_key(text)] = Incoming(vm, parse_key(incoming.vmi))
        self.ledger.save()
        keep = [e.handle for e in self.ledger.local.values()]
        keep += [e.handle for e in self.ledger.incoming.values()]
        for stray in await self.hv.reap(keep):
            log.warning("%s: stopped %s: no ledger entry manages it", self.node, stray)
        return lost

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
            st["networks"] = [
                {"name": name, "address": address}
                for name, address in sorted(self.networks.items())
            ]
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
        self.ledger.local[key_text(key)] = LocalEntry(self.hv.handle_for(spec), spec)
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
        self._remember(local.key, local.vm, self.ledger.local[key_text(local.key)].handle)
