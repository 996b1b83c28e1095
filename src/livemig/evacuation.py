"""Draining a node, as pure decisions (SPEC §5): what to do about each VMI on it, and how far the
drain has come.

A node is drained while it carries the drain taint (KubeVirt's ``kubevirt.io/drain``, or the
KubeVirt CR's ``nodeDrainTaintKey``); ``livemig drain`` puts it there with the cordon, and
``livemig uncordon`` takes both away. For each VMI still running on the node:

- a migration of it is unfinished: it is *in flight* (admitted) or *queued* (Pending) — or
  *blocked* when it is Pending because no node fits;
- its eviction strategy (the VMI's, else the cluster's, else LiveMigrate as the HyperConverged
  operator defaults it) is None or External: *blocked* — livemig does not move it, and says so;
- its last evacuation failed: *backing off* for KubeVirt's delay (20 s, doubled after every
  further failure since the last success, at most 5 min), then *migrate* again;
- no other node can take it (room, nodeSelector): *blocked* under LiveMigrate, *shut down*
  under LiveMigrateIfPossible;
- otherwise *migrate*: create an evacuation migration (priority system-maintenance).

VMIs are considered largest first, which is also the order their evacuations are created and
so admitted: the drain's tail is a small VM, not a big one moving alone.

The drain is over when no VMI runs on the node. The same function serves the controller, the
``drain --dry-run`` listing and the progress the CLI shows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from livemig.api.lifecycle import Figures, MigrationObject, Phase
from livemig.api.models import EvictionStrategy
from livemig.api.status import epoch_seconds
from livemig.scheduling import NodeView, choose_node, handover_pending

#: KubeVirt's default drain taint key (KubeVirt CR ``spec.configuration.migrations``
#: ``nodeDrainTaintKey`` changes it).
DRAIN_TAINT = "kubevirt.io/drain"
#: KubeVirt's evacuation backoff: the first retry after 20 s, doubling up to 5 minutes.
BACKOFF = (20.0, 300.0)
#: What a VMI gets when neither it nor the cluster names an eviction strategy: the
#: HyperConverged operator's default (KubeVirt alone would shut the VM down with its pod).
DEFAULT_STRATEGY = EvictionStrategy.LIVE_MIGRATE


class Step(StrEnum):
    """What the drain does about one VMI now."""

    MIGRATE = "Migrate"  # create an evacuation migration
    IN_FLIGHT = "InFlight"  # its migration is admitted (Scheduling … Running)
    QUEUED = "Queued"  # its migration waits for a slot
    BACKING_OFF = "BackingOff"  # its last evacuation failed; the next waits
    WAITING = "Waiting"  # not running yet: it can move once it runs
    BLOCKED = "Blocked"  # it will not move by itself: the drain cannot finish
    SHUT_DOWN = "ShutDown"  # LiveMigrateIfPossible and it cannot migrate: stop it


@dataclass(frozen=True, slots=True)
class Resident:
    """A VMI on the node being drained, as the drain needs it."""

    namespace: str
    name: str
    memory: int
    running: bool
    strategy: EvictionStrategy | None  # the VMI's own spec.evictionStrategy
    node_selector: Mapping[str, str] = field(default_factory=dict)
    created: str = ""  # creationTimestamp: only this VMI instance's migrations count

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class Decision:
    """One VMI's step, why, and for MIGRATE the attempt's name; ``due`` is when a backing-off
    one may go again (clock seconds)."""

    vmi: tuple[str, str]
    step: Step
    why: str
    strategy: EvictionStrategy
    migration: str | None = None
    due: float | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """The whole node, for ``get nodes``, the drain's live line and its summary."""

    vms_left: int = 0
    in_flight: int = 0
    queued: int = 0
    blocked: int = 0
    migrated: int = 0
    failed_attempts: int = 0
    bytes_moved: int = 0
    bytes_left: int = 0
    #: Bytes per second the drain has moved since it began (None before it moved anything).
    rate: float | None = None
    seconds_left: float | None = None

    @property
    def done(self) -> bool:
        return self.vms_left == 0


@dataclass(frozen=True, slots=True)
class Plan:
    decisions: tuple[Decision, ...]
    progress: Progress

    def of(self, step: Step) -> list[Decision]:
        return [d for d in self.decisions if d.step is step]


def strategy_of(
    own: EvictionStrategy | None, cluster: EvictionStrategy | None
) -> tuple[EvictionStrategy, str]:
    """The eviction strategy that applies, and where it comes from."""
    if own is not None:
        return own, "the VMI's"
    if cluster is not None:
        return cluster, "the cluster's"
    return DEFAULT_STRATEGY, "the default"


def backoff_delay(failures: int, backoff: tuple[float, float] = BACKOFF) -> float:
    """Seconds to wait after ``failures`` evacuation failures in a row (0 for none)."""
    if failures <= 0:
        return 0.0
    first, most = backoff
    return float(min(first * 2 ** (failures - 1), most))


def attempt_name(vmi: str, attempts: Sequence[MigrationObject]) -> str:
    """The next evacuation migration's name: ``<vmi>-evacuation-<n>``, n one past the highest
    used, the VMI's name shortened so the whole stays a valid object name."""
    pattern = re.compile(rf"^{re.escape(vmi[:230])}-evacuation-(\d+)$")
    used = [int(m.group(1)) for a in attempts if (m := pattern.match(a.name))]
    return f"{vmi[:230]}-evacuation-{max(used, default=0) + 1}"


def plan(
    node: str,
    residents: Sequence[Resident],
    migrations: Sequence[MigrationObject],
    nodes: Sequence[NodeView],
    cluster_strategy: EvictionStrategy | None,
    now: float,
    started: float,
    backoff: tuple[float, float] = BACKOFF,
    network: str | None = None,
) -> Plan:
    """What to do about each VMI on ``node`` and how far its drain is.

    ``migrations`` are all migrations (of any VMI); ``now`` and ``started`` (when the drain
    began) are wall-clock seconds, as the migrations' timestamps are; only evacuations of
    ``node`` created since ``started`` count towards the progress. Room on other nodes is
    reserved VMI by VMI, in order, so two VMs that each fit alone but not together are not both
    promised the same space. ``network`` is the cluster's dedicated migration network: a node
    without an address on it cannot take a VM."""
    by_vmi: dict[tuple[str, str], list[MigrationObject]] = {}
    for m in migrations:
        by_vmi.setdefault(m.vmi_key, []).append(m)
    free = list(nodes)
    decisions: list[Decision] = []
    bytes_left = 0
    # Largest first (by memory, the size known before a migration starts): evacuations are
    # created, and so admitted, in this order, so the drain does not end with one big VM moving
    # alone while the other slots sit idle (longest-processing-time-first scheduling).
    for r in sorted(residents, key=lambda r: (-r.memory, r.key)):
        own = sorted(
            (m for m in by_vmi.get(r.key, []) if m.created >= r.created),
            key=lambda m: (m.created, m.name),
        )
        strategy, source = strategy_of(r.strategy, cluster_strategy)
        decision = _decide(r, node, own, strategy, source, free, now, backoff, network)
        decisions.append(decision)
        active = next((m for m in own if m.status.is_active), None)
        figures = active.status.figures if active is not None else None
        bytes_left += figures.remaining if figures and figures.total else r.memory
        if decision.step is Step.MIGRATE:
            target, _ = choose_node(free, r.memory, r.node_selector, node, network)
            if target is not None:
                free = [
                    replace(n, memory_used=n.memory_used + r.memory) if n.name == target.name else n
                    for n in free
                ]
    return Plan(tuple(decisions), _progress(node, decisions, migrations, bytes_left, now, started))


def _decide(
    r: Resident,
    node: str,
    own: list[MigrationObject],
    strategy: EvictionStrategy,
    source: str,
    nodes: Sequence[NodeView],
    now: float,
    backoff: tuple[float, float],
    network: str | None,
) -> Decision:
    def decided(step: Step, why: str, **more: object) -> Decision:
        return Decision(r.key, step, why, strategy, **more)  # type: ignore[arg-type]

    active = next((m for m in own if m.status.is_active), None)
    moved = handover_pending(node, r.created, own)
    if active is None and moved is not None:
        return decided(Step.IN_FLIGHT, f"{moved.name}: Succeeded, handing over")
    if active is not None:
        st = active.status
        if st.holds_slot:
            return decided(Step.IN_FLIGHT, f"{active.name}: {st.phase.value}")
        if active.unschedulable:
            blocked = Step.BLOCKED if strategy is EvictionStrategy.LIVE_MIGRATE else Step.QUEUED
            return decided(blocked, f"{active.name} waits for a target: {active.unschedulable}")
        return decided(Step.QUEUED, f"{active.name} waits for a migration slot")
    if strategy is EvictionStrategy.NONE:
        return decided(
            Step.BLOCKED,
            f"evictionStrategy None ({source}): livemig does not move it; stop it, or give it "
            "evictionStrategy LiveMigrate",
        )
    if strategy is EvictionStrategy.EXTERNAL:
        return decided(
            Step.BLOCKED,
            f"evictionStrategy External ({source}): waiting for an outside controller to move "
            "or stop it",
        )
    if not r.running:
        return decided(Step.WAITING, "not running yet; it moves once it runs")
    here = next((n for n in nodes if n.name == node), None)
    if here is not None and not here.ready:
        # Only the node's own agent can start a live migration from it.
        return decided(
            Step.BLOCKED,
            f"{node} is NotReady: no agent there can migrate it; bring the agent back, or "
            "stop the VM (it starts again elsewhere if its runStrategy says so)",
        )
    evacuations = [m for m in own if m.evacuating is not None]
    failures = 0
    for m in reversed(evacuations):  # newest first, back to the last success
        if m.status.succeeded:
            break
        if m.status.phase is Phase.FAILED:
            failures += 1
    last = evacuations[-1] if evacuations else None
    if failures and last is not None and last.status.phase is Phase.FAILED:
        delay = backoff_delay(failures, backoff)
        due = (epoch_seconds(last.status.ended) or now) + delay
        if now < due:
            return decided(
                Step.BACKING_OFF,
                f"{last.name} failed ({last.status.reason or 'no reason given'}); "
                f"retry {failures + 1} in {due - now:.0f} s",
                due=due,
            )
    target, why = choose_node(nodes, r.memory, r.node_selector, node, network)
    if target is None:
        if strategy is EvictionStrategy.LIVE_MIGRATE_IF_POSSIBLE:
            return decided(Step.SHUT_DOWN, f"cannot migrate ({why}); LiveMigrateIfPossible")
        return decided(Step.BLOCKED, f"cannot migrate: {why}")
    return decided(
        Step.MIGRATE,
        why,
        migration=attempt_name(r.name, evacuations),
    )


def _progress(
    node: str,
    decisions: Sequence[Decision],
    migrations: Sequence[MigrationObject],
    bytes_left: int,
    now: float,
    started: float,
) -> Progress:
    steps = [d.step for d in decisions]
    moved = 0
    migrated = failed = 0
    for m in migrations:
        if m.evacuating != node or (epoch_seconds(m.created) or now) < started - 1:
            continue
        figures = m.status.figures or Figures()
        moved += figures.processed
        migrated += m.status.succeeded
        failed += m.status.phase is Phase.FAILED
    elapsed = now - started
    rate = moved / elapsed if moved and elapsed > 0 else None
    return Progress(
        vms_left=len(decisions),
        in_flight=steps.count(Step.IN_FLIGHT),
        queued=sum(s in (Step.QUEUED, Step.MIGRATE, Step.BACKING_OFF, Step.WAITING) for s in steps),
        blocked=steps.count(Step.BLOCKED),
        migrated=migrated,
        failed_attempts=failed,
        bytes_moved=moved,
        bytes_left=bytes_left,
        rate=rate,
        seconds_left=bytes_left / rate if rate else None,
    )
