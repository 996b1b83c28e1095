"""The controller's drain work: for every node that carries the drain taint, act on the plan of
:mod:`livemig.evacuation` — create evacuation migrations, shut down what may not stay, say
what blocks — and record the drain's progress in the Node's status, where ``get nodes``, the
``drain`` command and a restarted controller find it. When the taint goes (``uncordon``), the
evacuations that have not started moving memory are cancelled.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

from livemig.api.builders import evacuation_request
from livemig.api.lifecycle import MigrationObject, Phase
from livemig.api.models import EventType, EvictionStrategy
from livemig.api.status import condition, epoch_seconds, timestamp
from livemig.client import ApiClient
from livemig.clock import Clock
from livemig.clusterview import drain_taint, residents
from livemig.errors import AlreadyExists, Conflict, NotFound
from livemig.evacuation import BACKOFF, Plan, Progress, Step, plan
from livemig.events import EventRecorder
from livemig.informer import Informer, key_of
from livemig.perobject import PerObject
from livemig.scheduling import NodeView

log = logging.getLogger(__name__)

VMIM = "VirtualMachineInstanceMigration"
VMI = "VirtualMachineInstance"
DRAINING = "Draining"
#: The drain's byte figures change with every sample; write them at most this often.
PROGRESS_EVERY = 1.0


def drain_status(progress: Progress, started: str, plan: Plan, now: str) -> dict[str, Any]:
    """The Node's ``status.drain`` (livemig's own; KubeVirt keeps a drain in its taint only)."""
    out: dict[str, Any] = {
        "startTimestamp": started,
        "vmsLeft": progress.vms_left,
        "inFlight": progress.in_flight,
        "queued": progress.queued,
        "blocked": [
            {"vmi": f"{d.vmi[0]}/{d.vmi[1]}", "reason": d.why} for d in plan.of(Step.BLOCKED)
        ],
        "migrated": progress.migrated,
        "failedAttempts": progress.failed_attempts,
        "bytesMoved": progress.bytes_moved,
        "bytesLeft": progress.bytes_left,
    }
    if progress.rate is not None:
        out["bytesPerSecond"] = int(progress.rate)
    if progress.seconds_left is not None:
        out["estimatedSecondsLeft"] = round(progress.seconds_left)
    if progress.done:
        out["completionTimestamp"] = now
    return out


def drain_condition(progress: Progress, plan: Plan) -> tuple[str, str, str]:
    """The Node's Draining condition: status, reason, message."""
    if progress.done:
        return "False", "Drained", f"no VMI left; {progress.migrated} migrated"
    parts = [f"{progress.vms_left} VMI{'s' if progress.vms_left != 1 else ''} left"]
    parts += [
        f"{n} {what}"
        for n, what in (
            (progress.in_flight, "migrating"),
            (progress.queued, "queued"),
            (progress.blocked, "blocked"),
        )
        if n
    ]
    blocked = plan.of(Step.BLOCKED)
    if blocked and not progress.in_flight and progress.queued == 0:
        first = blocked[0]
        return (
            "True",
            "DrainBlocked",
            ", ".join(parts) + f"; {first.vmi[0]}/{first.vmi[1]}: {first.why}",
        )
    return "True", DRAINING, ", ".join(parts)


class Drains:
    def __init__(
        self,
        client: ApiClient,
        informer: Informer,
        events: EventRecorder,
        each: PerObject,
        clock: Clock,
        backoff: tuple[float, float] = BACKOFF,
    ) -> None:
        self.client = client
        self.informer = informer
        self.events = events
        self.each = each
        self.clock = clock
        self.backoff = backoff
        self._written: dict[str, float] = {}  # node → when its drain status was last written
        self._blocked: dict[str, frozenset[tuple[str, str]]] = {}

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.wall(), UTC)

    async def reconcile(
        self,
        objs: dict[str, list[dict[str, Any]]],
        nodes: Sequence[NodeView],
        taint_key: str,
        cluster_strategy: EvictionStrategy | None,
        network: str | None = None,
    ) -> None:
        migrations = [MigrationObject.of(raw) for raw in objs[VMIM]]
        # Unfinished evacuations by the node they empty: what an uncordon cancels.
        pending: dict[str, list[MigrationObject]] = {}
        for m in migrations:
            if m.evacuating and m.status.is_active and m.status.phase is not Phase.RUNNING:
                pending.setdefault(m.evacuating, []).append(m)
        for raw in objs["Node"]:
            taint = drain_taint(raw, taint_key)
            if taint is not None:
                work = partial(
                    self._drain,
                    raw,
                    taint,
                    objs[VMI],
                    migrations,
                    nodes,
                    cluster_strategy,
                    network,
                )
            else:
                work = partial(self._not_draining, raw, pending.get(raw["metadata"]["name"], []))
            await self.each.run("Node", raw, "DrainFailed", work)

    async def _drain(
        self,
        raw: dict[str, Any],
        taint: dict[str, Any],
        vmis: list[dict[str, Any]],
        migrations: list[MigrationObject],
        nodes: Sequence[NodeView],
        cluster_strategy: EvictionStrategy | None,
        network: str | None,
    ) -> None:
        name = raw["metadata"]["name"]
        recorded = ((raw.get("status") or {}).get("drain") or {}).get("startTimestamp")
        started = str(recorded or taint.get("timeAdded") or timestamp(self._now()))
        began = epoch_seconds(started) or self.clock.wall()
        now = self.clock.wall()
        step = plan(
            name,
            residents(name, vmis),
            migrations,
            nodes,
            cluster_strategy,
            now,
            began,
            self.backoff,
            network,
        )
        by_key = {key_of(v): v for v in vmis}
        for d in step.decisions:
            vmi = by_key.get(d.vmi)
            if vmi is None:
                continue
            if d.step is Step.MIGRATE and d.migration:
                await self._evacuate(vmi, name, d.migration)
            elif d.step is Step.SHUT_DOWN:
                await self._shut_down(vmi, name, d.why)
        await self._report(raw, started, step)

    async def _evacuate(self, vmi: dict[str, Any], node: str, migration: str) -> None:
        ns, vmi_name = key_of(vmi)
        try:
            await self.informer.create(evacuation_request(migration, vmi_name, ns, node))
        except (AlreadyExists, Conflict):
            return  # made already (a pass that saw a stale cache)
        await self.events.record(
            vmi,
            EventType.NORMAL,
            "Evicting",
            f"node {node} is being drained: migrating it ({VMIM} {migration})",
        )

    async def _shut_down(self, vmi: dict[str, Any], node: str, why: str) -> None:
        ns, vmi_name = key_of(vmi)
        await self.events.record(
            vmi,
            EventType.WARNING,
            "Evicting",
            f"node {node} is being drained and it {why}: shutting it down",
        )
        with contextlib.suppress(NotFound):
            await self.client.delete(VMI, vmi_name, ns)

    async def _report(self, raw: dict[str, Any], started: str, step: Plan) -> None:
        name = raw["metadata"]["name"]
        progress = step.progress
        status = raw.get("status") or {}
        old = status.get("drain") or {}
        new = drain_status(progress, started, step, timestamp(self._now()))
        if old.get("completionTimestamp") and progress.done:
            new["completionTimestamp"] = old["completionTimestamp"]
        counts = ("vmsLeft", "inFlight", "queued", "blocked", "migrated", "failedAttempts")
        news = any(old.get(k) != new.get(k) for k in counts) or not old
        due = self.clock.now() - self._written.get(name, float("-inf")) >= PROGRESS_EVERY
        if old == new or not (news or due):
            return
        state, reason, message = drain_condition(progress, step)

        def record(o: dict[str, Any]) -> dict[str, Any]:
            st = o.setdefault("status", {})
            st["drain"] = new
            condition(st, DRAINING, state, reason, message)
            return o

        await self.informer.modify("Node", name, None, record, status=True)
        self._written[name] = self.clock.now()
        blocked = frozenset(d.vmi for d in step.of(Step.BLOCKED))
        if blocked and blocked != self._blocked.get(name):
            lines = "; ".join(f"{d.vmi[0]}/{d.vmi[1]}: {d.why}" for d in step.of(Step.BLOCKED))
            await self.events.record(raw, EventType.WARNING, "DrainBlocked", lines)
        self._blocked[name] = blocked
        if progress.done and not old.get("completionTimestamp"):
            await self.events.record(
                raw,
                EventType.NORMAL,
                "Drained",
                f"no VMI left on {name}: {progress.migrated} migrated",
            )

    async def _not_draining(self, raw: dict[str, Any], pending: list[MigrationObject]) -> None:
        """No drain (any more): cancel this node's ``pending`` evacuations (those that have not
        begun moving memory: a Running one finishes), and close the drain's record."""
        name = raw["metadata"]["name"]
        cancelled = 0
        for m in pending:
            try:
                await self.client.delete(VMIM, m.name, m.namespace)
                cancelled += 1
            except NotFound:
                pass
        if not (raw.get("status") or {}).get("drain"):
            return
        left = ((raw.get("status") or {}).get("drain") or {}).get("vmsLeft", 0)

        def close(o: dict[str, Any]) -> dict[str, Any] | None:
            st = o.setdefault("status", {})
            if "drain" not in st:
                return None
            finished = bool(st["drain"].get("completionTimestamp"))
            st.pop("drain")
            if not finished:
                condition(
                    st,
                    DRAINING,
                    "False",
                    "DrainCancelled",
                    f"uncordoned with {left} VMI(s) left; pending evacuations cancelled",
                )
            return o

        await self.informer.modify("Node", name, None, close, status=True)
        self._blocked.pop(name, None)
        if cancelled:
            log.info(
                "livemig controller: %s uncordoned: %d evacuation(s) cancelled", name, cancelled
            )
