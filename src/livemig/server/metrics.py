"""``/metrics``: Prometheus text, with KubeVirt's metric names and labels where it has them
(its docs/observability/metrics.md) and what a fleet operator needs where it has none.

Gauges are computed at scrape time from the store — the truth, whoever wrote it — so a
restarted server reports the same values. Histograms are observed as migration status writes
arrive: each phase transition that happened while this server ran is observed once (a restarted
server starts them from zero, which Prometheus' ``rate()`` takes as a counter reset).

KubeVirt's:

- ``kubevirt_vmi_migrations_in_{unset,pending,scheduling,running}_phase`` (scheduling counts
  Scheduling, Scheduled, PreparingTarget and TargetReady);
- per VMI with a Running migration: ``kubevirt_vmi_migration_data_processed_bytes``,
  ``…_data_remaining_bytes``, ``…_dirty_memory_rate_bytes``, ``…_memory_transfer_rate_bytes``;
- per VMI, of its latest migration: ``kubevirt_vmi_migration_start_time_seconds``,
  ``…_end_time_seconds``, ``…_succeeded``, ``…_failed``,
  ``kubevirt_vmi_migration_data_bytes_total``;
- ``kubevirt_vmi_migration_phase_transition_time_from_creation_seconds{phase}``;
- ``kubevirt_vmi_non_evictable``: eviction strategy LiveMigrate, and no other node can take it.

livemig's own: ``livemig_migration_admission_wait_seconds`` (Pending until a slot, as a
histogram), ``livemig_migrations_pending{reason}`` (why each Pending migration waits:
cluster-limit, node-limit, no-target, admitting) and per draining node
``livemig_node_drain_vmis{state}``, ``livemig_node_drain_bytes_moved``,
``livemig_node_drain_estimated_seconds_left``.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from livemig.api.lifecycle import MigrationObject, MigrationStatus, Phase
from livemig.api.models import EvictionStrategy
from livemig.api.status import epoch_seconds
from livemig.api.vmi_status import VMIPhase, VMIStatus
from livemig.clusterview import can_migrate_now, inventory_of, node_views, typed_vmi
from livemig.evacuation import strategy_of
from livemig.inventory import Inventory
from livemig.policy import DefaultsProfile, effective_configuration
from livemig.store import Store

VMIM = "VirtualMachineInstanceMigration"
VMI = "VirtualMachineInstance"
#: Seconds, for both histograms: a drain's waits run from sub-second to an hour.
BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
SCHEDULING_PHASES = frozenset(
    {Phase.SCHEDULING, Phase.SCHEDULED, Phase.PREPARING_TARGET, Phase.TARGET_READY}
)
PENDING_REASONS = ("cluster-limit", "node-limit", "no-target", "admitting")
DRAIN_STATES = (
    ("left", "vmsLeft"),
    ("in_flight", "inFlight"),
    ("queued", "queued"),
    ("migrated", "migrated"),
)
#: Migrations whose transitions are remembered (a bounded memory of what was observed).
REMEMBERED = 20_000


class TransitionObserver:
    """Observes each migration phase transition once, as status writes arrive."""

    def __init__(self, registry: CollectorRegistry, started: float) -> None:
        self.started = started
        self.from_creation = Histogram(
            "kubevirt_vmi_migration_phase_transition_time_from_creation_seconds",
            "Seconds from a migration's creation to each phase it enters.",
            ["phase"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.admission_wait = Histogram(
            "livemig_migration_admission_wait_seconds",
            "Seconds a migration waited in Pending for a parallel-migration slot and a target.",
            buckets=BUCKETS,
            registry=registry,
        )
        self._seen: OrderedDict[str, set[Phase]] = OrderedDict()
        self._lock = threading.Lock()  # writes are handled in worker threads

    def observe(self, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        uid = str(meta.get("uid") or meta.get("name"))
        created = epoch_seconds(meta.get("creationTimestamp"))
        st = MigrationStatus.of(obj)
        with self._lock:
            seen = self._seen.setdefault(uid, set())
            self._seen.move_to_end(uid)
            while len(self._seen) > REMEMBERED:
                self._seen.popitem(last=False)
            fresh = [(p, w) for p, w in st.transitions if p not in seen]
            seen.update(p for p, _ in fresh)
        for phase, when in fresh:
            at = epoch_seconds(when)
            if at is None or at < self.started or created is None:
                continue  # it happened before this server ran: not ours to count
            self.from_creation.labels(phase=phase.value).observe(max(at - created, 0.0))
            if phase is Phase.SCHEDULING:
                pending = epoch_seconds(st.phase_time(Phase.PENDING)) or created
                self.admission_wait.observe(max(at - pending, 0.0))


class ClusterCollector(Collector):
    """The gauges, read from the store at every scrape."""

    def __init__(self, store: Store, defaults: DefaultsProfile = DefaultsProfile.DOCUMENT) -> None:
        self.store = store
        self.defaults = defaults

    def collect(self) -> Iterator[Metric]:
        migrations, _ = self.store.list(VMIM, None)
        vmis, _ = self.store.list(VMI, None)
        nodes, _ = self.store.list("Node", None)
        typed = [MigrationObject.of(m) for m in migrations]
        inventory = self._inventory()
        yield from _phase_counts(typed)
        yield from _per_vmi(typed)
        yield from _pending_reasons(migrations, typed, inventory)
        yield from _non_evictable(vmis, nodes, migrations, typed, inventory)
        yield from _drains(nodes)

    def _inventory(self) -> Inventory:
        objs = []
        for kind in ("HyperConverged", "KubeVirt"):
            objs += self.store.list(kind, None)[0]
        return inventory_of(objs, self.defaults)


def _labels(m: MigrationObject) -> list[str]:
    return [m.vmi_name, m.namespace, m.status.source_node or ""]


VMI_LABELS = ["name", "namespace", "node"]


def _phase_counts(typed: Sequence[MigrationObject]) -> Iterator[Metric]:
    counts = Counter(m.status.phase for m in typed)
    groups = {
        "unset": counts[Phase.UNSET],
        "pending": counts[Phase.PENDING],
        "scheduling": sum(counts[p] for p in SCHEDULING_PHASES),
        "running": counts[Phase.RUNNING],
    }
    for name, value in groups.items():
        g = GaugeMetricFamily(
            f"kubevirt_vmi_migrations_in_{name}_phase",
            f"Number of current migrations in the {name} phase.",
        )
        g.add_metric([], value)
        yield g


def _per_vmi(typed: Sequence[MigrationObject]) -> Iterator[Metric]:
    figures = {
        "data_processed_bytes": ("processed", "Bytes of guest memory sent so far."),
        "data_remaining_bytes": ("remaining", "Bytes of guest memory left to send."),
        "dirty_memory_rate_bytes": ("dirty_rate", "Bytes per second the guest dirties."),
        "memory_transfer_rate_bytes": ("transfer_rate", "Bytes per second being sent."),
    }
    families = {
        name: GaugeMetricFamily(f"kubevirt_vmi_migration_{name}", help_, labels=VMI_LABELS)
        for name, (_, help_) in figures.items()
    }
    for m in typed:
        f = m.status.figures
        if m.status.phase is not Phase.RUNNING or f is None:
            continue
        for name, (attr, _) in figures.items():
            families[name].add_metric(_labels(m), float(getattr(f, attr)))
    yield from families.values()

    latest: dict[tuple[str, str], MigrationObject] = {}
    for m in typed:
        old = latest.get(m.vmi_key)
        if old is None or (m.created, m.name) > (old.created, old.name):
            latest[m.vmi_key] = m
    start = GaugeMetricFamily(
        "kubevirt_vmi_migration_start_time_seconds",
        "When the VMI's latest migration started (Unix seconds).",
        labels=VMI_LABELS,
    )
    end = GaugeMetricFamily(
        "kubevirt_vmi_migration_end_time_seconds",
        "When the VMI's latest migration ended (Unix seconds).",
        labels=VMI_LABELS,
    )
    ok = GaugeMetricFamily(
        "kubevirt_vmi_migration_succeeded",
        "1 if the VMI's latest migration succeeded.",
        labels=VMI_LABELS,
    )
    failed = GaugeMetricFamily(
        "kubevirt_vmi_migration_failed",
        "1 if the VMI's latest migration failed.",
        labels=VMI_LABELS,
    )
    total = CounterMetricFamily(
        "kubevirt_vmi_migration_data_bytes",
        "The guest data the VMI's latest migration has to move (memory, plus copied disks).",
        labels=VMI_LABELS,
    )
    for m in latest.values():
        st = m.status
        if (t := epoch_seconds(st.started)) is not None:
            start.add_metric(_labels(m), t)
        if (t := epoch_seconds(st.ended)) is not None:
            end.add_metric(_labels(m), t)
        if st.finished:
            ok.add_metric(_labels(m), 1.0 if st.succeeded else 0.0)
            failed.add_metric(_labels(m), 1.0 if st.phase is Phase.FAILED else 0.0)
        if st.figures is not None and st.figures.total:
            total.add_metric(_labels(m), float(st.figures.total))
    yield from (start, end, ok, failed, total)


def _pending_reasons(
    raws: Sequence[dict[str, Any]], typed: Sequence[MigrationObject], inventory: Inventory
) -> Iterator[Metric]:
    limits = effective_configuration(inventory.cluster)
    active = [m for m in typed if m.status.holds_slot]
    per_source = Counter(m.status.source_node for m in active)
    reasons = Counter[str]()
    for m in typed:
        if m.status.phase is not Phase.PENDING:
            continue
        if m.unschedulable:
            reasons["no-target"] += 1
        elif len(active) >= limits.parallel_migrations_per_cluster:
            reasons["cluster-limit"] += 1
        elif per_source[m.status.source_node] >= limits.parallel_outbound_migrations_per_node:
            reasons["node-limit"] += 1
        else:
            reasons["admitting"] += 1
    g = GaugeMetricFamily(
        "livemig_migrations_pending",
        "Pending migrations by why they wait: cluster-limit (parallelMigrationsPerCluster), "
        "node-limit (parallelOutboundMigrationsPerNode), no-target (no node fits), admitting.",
        labels=["reason"],
    )
    for reason in PENDING_REASONS:
        g.add_metric([reason], reasons[reason])
    yield g


def _non_evictable(
    vmis: Sequence[dict[str, Any]],
    nodes: Sequence[dict[str, Any]],
    migrations: Sequence[dict[str, Any]],
    typed: Sequence[MigrationObject],
    inventory: Inventory,
) -> Iterator[Metric]:
    views = node_views(nodes, vmis, migrations)
    moving = {m.vmi_key for m in typed if m.status.is_active}
    cluster = inventory.cluster.eviction_strategy
    network = effective_configuration(inventory.cluster).network
    g = GaugeMetricFamily(
        "kubevirt_vmi_non_evictable",
        "1 for a VMI whose eviction strategy is LiveMigrate but that no other node can take now "
        "(a drain of its node would be blocked by it).",
        labels=VMI_LABELS,
    )
    for raw in vmis:
        st = VMIStatus.of(raw)
        if st.phase is not VMIPhase.RUNNING or st.node is None:
            continue
        ns, name = str(raw["metadata"].get("namespace")), str(raw["metadata"]["name"])
        vmi = typed_vmi(raw)
        strategy, _ = strategy_of(vmi.spec.eviction_strategy if vmi else None, cluster)
        stuck = (
            strategy is EvictionStrategy.LIVE_MIGRATE
            and (ns, name) not in moving
            and not can_migrate_now(raw, views, network)
        )
        g.add_metric([name, ns, st.node], 1.0 if stuck else 0.0)
    yield g


def _drains(nodes: Sequence[dict[str, Any]]) -> Iterator[Metric]:
    vmis = GaugeMetricFamily(
        "livemig_node_drain_vmis",
        "VMIs of a draining node by state (left = still on it; migrated = by this drain).",
        labels=["node", "state"],
    )
    blocked = GaugeMetricFamily(
        "livemig_node_drain_blocked_vmis",
        "VMIs that block a node's drain (they cannot or may not move).",
        labels=["node"],
    )
    moved = GaugeMetricFamily(
        "livemig_node_drain_bytes_moved", "Bytes this drain has migrated.", labels=["node"]
    )
    left = GaugeMetricFamily(
        "livemig_node_drain_estimated_seconds_left",
        "Seconds the drain is estimated to need still, from the rate observed so far.",
        labels=["node"],
    )
    draining = GaugeMetricFamily(
        "livemig_node_draining", "1 while a node is being drained.", labels=["node"]
    )
    for raw in nodes:
        name = raw["metadata"]["name"]
        drain = (raw.get("status") or {}).get("drain") or {}
        active = bool(drain) and not drain.get("completionTimestamp")
        draining.add_metric([name], 1.0 if active else 0.0)
        if not drain:
            continue
        for state, key in DRAIN_STATES:
            vmis.add_metric([name, state], float(drain.get(key, 0)))
        blocked.add_metric([name], float(len(drain.get("blocked") or [])))
        moved.add_metric([name], float(drain.get("bytesMoved", 0)))
        if drain.get("estimatedSecondsLeft") is not None and active:
            left.add_metric([name], float(drain["estimatedSecondsLeft"]))
    yield from (draining, vmis, blocked, moved, left)


def metrics_registry(
    store: Store, started: float, defaults: DefaultsProfile = DefaultsProfile.DOCUMENT
) -> tuple[CollectorRegistry, TransitionObserver]:
    """A registry of this server's metrics, and the observer its status writes feed;
    ``started`` is when the server started (wall-clock seconds)."""
    registry = CollectorRegistry()
    registry.register(ClusterCollector(store, defaults))
    return registry, TransitionObserver(registry, started)
