"""The target side of a migration: prepare the incoming QEMU, stop it if the migration ends
without it, adopt it when the guest has arrived (QEMU's word, not the API's), record a success
its source could not, and offer a new address when a post-copy link breaks."""

from __future__ import annotations

import contextlib
from functools import partial
from typing import Any

import httpx

from livemig.agent.base import VMI, VMIM, AgentBase, Incoming, Key, Local, key_text, log
from livemig.agent.ledger import IncomingEntry
from livemig.agent.vmspec import vm_spec
from livemig.api.lifecycle import MigrationObject, MigrationStatus, Phase
from livemig.api.loading import validate
from livemig.api.models import EventType, VirtualMachineInstance
from livemig.api.vmi_status import VMIStatus, vmi_handed_over, vmi_running
from livemig.errors import (
    HypervisorError,
    LivemigError,
    NotFound,
)
from livemig.hypervisor import TransferStatus
from livemig.migration import (
    params_for,
)
from livemig.policy import MigrationConfiguration

#: Seconds a target whose QEMU completed a migration waits for the source to record it before
#: recording it itself (the source's record carries the transfer figures; a dead source's none).
HANDOVER_GRACE = 10.0
#: Seconds between a target's looks at its incoming QEMUs for a broken post-copy link, and
#: before it offers a new recovery address when an offer was not taken.
RECOVERY_WATCH, RECOVERY_REOFFER = 0.5, 5.0


class TargetSide(AgentBase):
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
        raw = self.informer.get(VMIM, mkey[1], mkey[0])
        st = MigrationStatus.of(raw) if raw is not None else None
        if st is None or st.phase is not Phase.RUNNING or not st.in_post_copy:
            # Only a post-copy link can break and be recovered; asking every incoming QEMU
            # twice a second cost the control plane ~30 ms per hand-off (control_latency).
            inc.offered_at = None
            return
        if not inc.vm.alive():
            return
        wanted = st.recovery_wanted
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
        network = (st.configuration or {}).get("network")
        listen = self._listen_address(str(network) if network else None)
        address = await inc.vm.recover_incoming(f"tcp:{listen}:0")
        inc.offered_at = now
        log.warning("%s: post-copy link of %s/%s broke; listening on %s", self.node, *mkey, address)
        await self._migration_step(mkey, lambda st: st.offer_recovery(address))

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
            self._remember(key, vm, self.ledger.incoming[key_text(mkey)].handle)
            self._drop_incoming(mkey)
            if await vm.run_state() == "paused":
                await vm.resume()  # paused for the switch: it runs again, here
            await self._vmi_write(
                key, partial(vmi_running, node=self.node, process=f"QEMU pid {vm.pid}")
            )
            return

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
        self._say(
            VMIM,
            m.key,
            EventType.NORMAL,
            "PreparingTarget",
            f"{self.node} starts the incoming VM for {m.namespace}/{m.vmi_name}",
        )
        try:
            vmi_raw = self.informer.get(VMI, m.vmi_name, m.namespace)
            if vmi_raw is None:
                raise NotFound(f"VirtualMachineInstance {m.namespace}/{m.vmi_name} is gone")
            vmi = validate(vmi_raw)
            assert isinstance(vmi, VirtualMachineInstance)
            spec = vm_spec(vmi, vmi_raw["metadata"].get("annotations") or {}, self.disk_root)
            config = MigrationConfiguration.from_dict(dict(m.status.configuration or {}))
            listen = self._listen_address(config.network)
            handle = self.hv.handle_for(spec, incoming=True)
            # In the ledger before QEMU starts: a crash in between leaves a QEMU we can find.
            self.ledger.incoming[key_text(m.key)] = IncomingEntry(key_text(m.vmi_key), handle, spec)
            self.ledger.save()
            try:
                vm = await self.hv.start_incoming(spec, f"tcp:{listen}:0", params_for(config))
            except BaseException:
                self._drop_incoming(m.key)
                raise
        except (LivemigError, KeyError) as exc:
            why = f"target {self.node} could not prepare: {exc}"
            await self._migration_step(m.key, lambda st: st.fail(why, self._now()))
            self._say(VMIM, m.key, EventType.WARNING, "FailedMigration", why)
            return
        self.incoming[m.key] = Incoming(vm, m.vmi_key)
        address = vm.listen_uri or ""
        ready = await self._migration_step(m.key, lambda st: st.target_ready(address, self._now()))
        if ready is not None and MigrationStatus.of(ready).phase is Phase.TARGET_READY:
            self._say(
                VMIM,
                m.key,
                EventType.NORMAL,
                "SuccessfulHandOver",
                f"{self.node} waits for the guest on {address}; the source may start",
            )
