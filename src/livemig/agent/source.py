"""The source side of a migration: start (or take over) the runner, record each switch before
QEMU is told, report the figures, and deliver the outcome and the hand-over through the
ledger's outbox, whatever the API server is going through."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict
from datetime import datetime
from functools import partial
from typing import Any

import httpx

from livemig.agent.base import VMI, VMIM, AgentBase, Key, Local, Outgoing, key_text, log, parse_key
from livemig.api.lifecycle import Figures, MigrationObject, MigrationStatus, Phase
from livemig.api.models import EventType
from livemig.api.quantity import short_bytes
from livemig.api.transfer import MigrationMode
from livemig.api.vmi_status import VMIStatus, vmi_handed_over
from livemig.errors import (
    CancelRefused,
    LivemigError,
    NotFound,
)
from livemig.hypervisor import TransferStats, TransferStatus
from livemig.migration import (
    USER_CANCEL,
    MigrationResult,
    MigrationRunner,
    Outcome,
)
from livemig.policy import MigrationConfiguration

REPORT_INTERVAL = 1.0


class SourceSide(AgentBase):
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
                    try:
                        out.runner.cancel(st.abort_requested or st.reason)
                    except CancelRefused as exc:
                        if not out.abort_refused:
                            out.abort_refused = True
                            self._say(
                                VMIM, m.key, EventType.WARNING, "FailedAbortMigration", str(exc)
                            )
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
        if await local.vm.run_state() == "postmigrate":
            # This QEMU already handed the guest to another node (that hand-over is not written
            # yet): migrating it again would roll the guest back to that moment.
            reason = (
                f"{m.namespace}/{m.vmi_name} already moved off {self.node} by an earlier "
                "migration; retry once the VMI names its new node"
            )
            await self._migration_step(m.key, lambda st: st.fail(reason, self._now()))
            return
        started = await self._migration_step(m.key, lambda st: st.start(self._now()))
        if started is None or MigrationStatus.of(started).phase is not Phase.RUNNING:
            return  # cancelled or failed meanwhile
        self._say(VMI, m.vmi_key, EventType.NORMAL, "Migrating", _migrating_words(m))
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

    async def _record_switch(self, mkey: Key, mode: MigrationMode, why: str = "") -> bool | None:
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
        switched = st.phase is Phase.RUNNING and st.mode is mode
        if switched and why:
            reason = "SwitchedToPostCopy" if mode is MigrationMode.POST_COPY else "Paused"
            m = MigrationObject.of(out)
            self._say(VMIM, mkey, EventType.WARNING, reason, why)
            self._say(VMI, m.vmi_key, EventType.WARNING, reason, f"{m.name}: {why}")
        return switched

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
        if broken:
            self._say(
                VMIM,
                mkey,
                EventType.WARNING,
                "PostCopyPaused",
                "the migration link broke in post-copy: both QEMUs hold their half of the guest "
                f"and wait for it to come back (given up after {self.postcopy_give_up:.0f} s)",
            )
        else:
            self._say(VMIM, mkey, EventType.NORMAL, "PostCopyResumed", "the post-copy link is back")

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
        self.ledger.outbox[key_text(m.key)] = record
        self.ledger.save()
        await self._deliver(key_text(m.key), record)
        # Only now: until the outcome is written, a pass must not take this for a migration
        # whose runner was lost.
        self.outgoing.pop(m.key, None)

    async def _deliver_outbox(self) -> None:
        for text, record in list(self.ledger.outbox.items()):
            await self._deliver(text, record)

    async def _deliver(self, text: str, record: dict[str, Any]) -> None:
        """Write an outcome, then what follows from it, until the API server has taken it."""
        mkey, vmi_key = parse_key(text), parse_key(record["vmi"])
        ok = record["outcome"] == Outcome.SUCCEEDED
        # The outcome first: it frees the parallel slot for the next pending migration.
        recorded = await self._persist(partial(self._finish, mkey, record), "record " + text)
        if recorded:
            self._say_outcome(mkey, vmi_key, record)
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

    def _say_outcome(self, mkey: Key, vmi_key: Key, record: dict[str, Any]) -> None:
        """The outcome's events: on the migration (KubeVirt's reasons) and on the VMI."""
        target, name = record["target"], mkey[1]
        if record["outcome"] == Outcome.SUCCEEDED:
            figures = record["figures"] or {}
            words = (
                f"{self.node} → {target} in {record['duration'] or 0:.1f} s, "
                f"{short_bytes(int(figures.get('processed', 0)))} sent, "
                f"downtime {record['downtime_ms'] if record['downtime_ms'] is not None else '?'} ms"
                f" ({record['mode']})"
            )
            self._say(VMIM, mkey, EventType.NORMAL, "SuccessfulMigration", words)
            self._say(VMI, vmi_key, EventType.NORMAL, "Migrated", f"{name}: {words}")
        elif record["reason"] == USER_CANCEL:
            words = f"cancelled: the VM keeps running on {self.node}"
            self._say(VMIM, mkey, EventType.NORMAL, "SuccessfulAbortMigration", words)
        else:
            words = f"{record['reason']}" + (
                "; the guest is lost" if record["guest_lost"] else f"; it runs on, on {self.node}"
            )
            self._say(VMIM, mkey, EventType.WARNING, "FailedMigration", words)
            self._say(VMI, vmi_key, EventType.WARNING, "FailedMigration", f"{name}: {words}")

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


def _fail_now(reason: str, now: datetime, st: MigrationStatus) -> MigrationStatus:
    return st.fail(reason, now)


class _ThroughTheApi:
    """A source's side of the post-copy recovery protocol (migration.Recovery): the target's
    offers and the source's "spent" notes travel in the migration's status."""

    def __init__(self, agent: SourceSide, mkey: Key) -> None:
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
        "vmi": key_text(m.vmi_key),
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


def _migrating_words(m: MigrationObject) -> str:
    config = m.status.configuration or {}
    cap = int(config.get("bandwidthPerMigration") or 0)
    return (
        f"to {m.status.target_node} ({VMIM} {m.name}; "
        f"{'policy ' + m.status.policy if m.status.policy else 'cluster settings'}; "
        f"bandwidth {short_bytes(cap) + '/s' if cap else 'unlimited'})"
    )
