"""What each console page shows, computed from stored objects: plain records the templates lay
out. The same typed views and pure rules as the controller (scheduling, evacuation, policy)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from livemig.api.lifecycle import Figures, MigrationObject, Phase
from livemig.api.quantity import short_bytes
from livemig.api.status import epoch_seconds, node_ready
from livemig.api.vmi_status import VMIPhase, VMIStatus
from livemig.clusterview import (
    can_migrate_now,
    inventory_of,
    memory_used,
    node_networks,
    node_views,
    typed_vmi,
    valid_objects,
)
from livemig.convergence import acceptable_completion_time
from livemig.inventory import Inventory
from livemig.policy import (
    DefaultsProfile,
    MigrationConfiguration,
    Precedence,
    effective_configuration,
)
from livemig.store import Store

VMIM = "VirtualMachineInstanceMigration"
VMI = "VirtualMachineInstance"


def inventory(store: Store, defaults: DefaultsProfile, *more: Any) -> Inventory:
    """Cluster settings, policies and namespaces as stored (objects that do not validate are
    left out, as the controller leaves them out), plus ``more``."""
    objs = []
    for kind in ("HyperConverged", "KubeVirt", "MigrationPolicy", "Namespace"):
        objs += store.list(kind, None)[0]
    return inventory_of(objs, defaults, more)


@dataclass(frozen=True, slots=True)
class NodeRow:
    name: str
    ready: bool
    cordoned: bool
    draining: bool
    drain: dict[str, Any]
    memory_capacity: str
    memory_used: str
    memory_free: str
    used_percent: int
    vms: int
    migrations_in: int
    migrations_out: int
    out_limit: int
    networks: dict[str, str]


@dataclass(frozen=True, slots=True)
class Overview:
    nodes: list[NodeRow]
    running: int
    per_cluster: int
    per_node: int
    pending: int
    events: list[dict[str, Any]] = field(default_factory=list)


def overview(store: Store, defaults: DefaultsProfile) -> Overview:
    nodes, _ = store.list("Node", None)
    vmis, _ = store.list(VMI, None)
    migrations, _ = store.list(VMIM, None)
    events, _ = store.list("Event", None)
    limits = effective_configuration(inventory(store, defaults).cluster)
    typed = [MigrationObject.of(m) for m in migrations]
    active = [m for m in typed if m.status.holds_slot]
    out = Counter(m.status.source_node for m in active)
    into = Counter(m.status.target_node for m in active)
    on = Counter(st.node for v in vmis if (st := VMIStatus.of(v)).node and not st.finished)
    used = memory_used(vmis, migrations)
    rows = []
    for raw in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name = raw["metadata"]["name"]
        capacity = int(((raw.get("status") or {}).get("capacity") or {}).get("memoryBytes", 0))
        drain = (raw.get("status") or {}).get("drain") or {}
        rows.append(
            NodeRow(
                name,
                node_ready(raw),
                bool((raw.get("spec") or {}).get("unschedulable")),
                bool(drain) and not drain.get("completionTimestamp"),
                drain,
                short_bytes(capacity),
                short_bytes(used.get(name, 0)),
                short_bytes(max(capacity - used.get(name, 0), 0)),
                min(100, round(100 * used.get(name, 0) / capacity)) if capacity else 0,
                on[name],
                into[name],
                out[name],
                limits.parallel_outbound_migrations_per_node,
                node_networks(raw),
            )
        )
    latest = sorted(events, key=lambda e: str(e.get("lastTimestamp") or ""), reverse=True)[:15]
    return Overview(
        rows,
        len(active),
        limits.parallel_migrations_per_cluster,
        limits.parallel_outbound_migrations_per_node,
        sum(m.status.phase in (Phase.PENDING, Phase.UNSET) for m in typed),
        latest,
    )


@dataclass(frozen=True, slots=True)
class MigrationRow:
    namespace: str
    name: str
    vmi: str
    phase: str
    mode: str
    percent: int
    processed: str
    total: str
    remaining: str
    rate: str
    elapsed: str
    acceptable: str
    policy: str
    source: str
    target: str
    reason: str
    can_cancel: bool
    finished: bool
    evacuating: str | None
    created: str


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 120:
        return f"{value:.0f} s"
    return f"{value / 60:.1f} min"


def migration_rows(store: Store, now: float) -> list[MigrationRow]:
    migrations, _ = store.list(VMIM, None)
    rows = []
    for raw in migrations:
        m = MigrationObject.of(raw)
        st = m.status
        f = st.figures or Figures()
        percent = (
            100 if st.succeeded else (100 * (f.total - f.remaining) // f.total if f.total else 0)
        )
        started = epoch_seconds(st.started)
        ended = epoch_seconds(st.ended)
        elapsed = (ended or now) - started if started is not None else None
        acceptable = None
        if st.configuration:
            try:
                config = MigrationConfiguration.from_dict(dict(st.configuration))
            except (KeyError, TypeError, ValueError):
                config = None  # written by hand or by another version: show the rest anyway
            if config is not None:
                acceptable = acceptable_completion_time(config, f.total or st.memory_bytes) or None
        rows.append(
            MigrationRow(
                m.namespace,
                m.name,
                m.vmi_name,
                st.phase.value or "Pending",
                st.mode.value if st.mode else "",
                max(0, min(100, int(percent))),
                short_bytes(f.processed),
                short_bytes(f.total),
                short_bytes(f.remaining),
                f"{short_bytes(f.transfer_rate)}/s" if f.transfer_rate else "",
                _seconds(elapsed),
                _seconds(acceptable) if acceptable else "no limit",
                st.policy or ("(cluster settings)" if st.configuration else ""),
                st.source_node or "",
                st.target_node or "",
                st.reason or m.unschedulable or "",
                st.can_cancel,
                st.finished,
                m.evacuating,
                m.created,
            )
        )
    # Unfinished first, newest first within each (two stable sorts).
    rows.sort(key=lambda r: r.created, reverse=True)
    return sorted(rows, key=lambda r: r.finished)


@dataclass(frozen=True, slots=True)
class VMIChoice:
    namespace: str
    name: str
    node: str


def running_vmis(store: Store) -> list[VMIChoice]:
    vmis, _ = store.list(VMI, None)
    out = []
    for raw in vmis:
        st = VMIStatus.of(raw)
        if st.phase is VMIPhase.RUNNING and st.node:
            out.append(
                VMIChoice(str(raw["metadata"].get("namespace")), raw["metadata"]["name"], st.node)
            )
    return sorted(out, key=lambda v: (v.namespace, v.name))


def policy_rows(store: Store, defaults: DefaultsProfile) -> list[dict[str, Any]]:
    """Each policy, and the VMIs it wins now."""
    inv = inventory(store, defaults, *typed_vmis(store))
    wins: Counter[str] = Counter()
    for _, resolution in inv.resolve_all(inv.workloads, Precedence.DOCUMENTED):
        if resolution.winner is not None:
            wins[resolution.winner.name] += 1
    policies, _ = store.list("MigrationPolicy", None)
    return [
        {
            "name": p["metadata"]["name"],
            "spec": p.get("spec") or {},
            "wins": wins[p["metadata"]["name"]],
        }
        for p in sorted(policies, key=lambda p: p["metadata"]["name"])
    ]


def typed_vmis(store: Store) -> Sequence[Any]:
    return valid_objects(store.list(VMI, None)[0])


def policy_preview(
    store: Store, defaults: DefaultsProfile, policy: Any
) -> tuple[list[str], list[tuple[str, str]]]:
    """Which running VMIs ``policy`` would apply to, and which of those it takes over from
    another policy (VMI, that policy)."""
    vmis = typed_vmis(store)
    before = inventory(store, defaults, *vmis)
    others = [p for p in before.policies if p.name != policy.name]
    after = Inventory.from_objects(
        [
            *before.hyperconverged,
            *before.kubevirt,
            *others,
            policy,
            *before.namespaces.values(),
            *vmis,
        ],
        defaults,
    )
    old = {
        w.ref: r.winner.name if r.winner else None
        for w, r in before.resolve_all(before.workloads, Precedence.DOCUMENTED)
    }
    applies, takes = [], []
    for w, r in after.resolve_all(after.workloads, Precedence.DOCUMENTED):
        if r.winner is not None and r.winner.name == policy.name:
            applies.append(w.ref)
            previous = old.get(w.ref)
            if previous and previous != policy.name:
                takes.append((w.ref, previous))
    return applies, takes


@dataclass(frozen=True, slots=True)
class VMRow:
    namespace: str
    name: str
    phase: str
    node: str
    memory: str
    labels: dict[str, str]
    migratable: bool
    policy: str


def vm_rows(store: Store, defaults: DefaultsProfile) -> list[VMRow]:
    nodes, _ = store.list("Node", None)
    vmis, _ = store.list(VMI, None)
    migrations, _ = store.list(VMIM, None)
    inv = inventory(store, defaults, *typed_vmis(store))
    network = effective_configuration(inv.cluster).network
    winners = {
        (w.namespace, w.name): (r.winner.name if r.winner else "")
        for w, r in inv.resolve_all(inv.workloads, Precedence.DOCUMENTED)
    }
    nv = node_views(nodes, vmis, migrations)
    rows = []
    for raw in sorted(
        vmis, key=lambda v: (v["metadata"].get("namespace", ""), v["metadata"]["name"])
    ):
        st = VMIStatus.of(raw)
        vmi = typed_vmi(raw)
        ns, name = str(raw["metadata"].get("namespace")), raw["metadata"]["name"]
        rows.append(
            VMRow(
                ns,
                name,
                st.phase.value or "Pending",
                st.node or "",
                short_bytes(vmi.spec.memory_bytes() or 0) if vmi else "",
                dict(raw["metadata"].get("labels") or {}),
                can_migrate_now(raw, nv, network),
                winners.get((ns, name), ""),
            )
        )
    return rows


@dataclass(frozen=True, slots=True)
class VMDetail:
    raw: dict[str, Any]
    row: VMRow
    winner: str | None
    reason: str
    runner_up: str | None
    other_rule: str | None
    candidates: list[dict[str, Any]]
    settings: list[tuple[str, str, str]]  # name, value, source
    history: list[MigrationRow]


def vm_detail(
    store: Store, defaults: DefaultsProfile, namespace: str, name: str, now: float
) -> VMDetail:
    raw = store.get(VMI, namespace, name)
    inv = inventory(store, defaults, *typed_vmis(store))
    ((_, res),) = inv.resolve_all(inv.select([name], namespace), Precedence.DOCUMENTED)
    conf = inv.configuration(res)
    row = next(r for r in vm_rows(store, defaults) if (r.namespace, r.name) == (namespace, name))
    history = [r for r in migration_rows(store, now) if (r.namespace, r.vmi) == (namespace, name)]
    values = conf.as_dict()
    return VMDetail(
        raw,
        row,
        res.winner.name if res.winner else None,
        res.reason,
        res.runner_up.name if res.runner_up else None,
        res.other_rule_winner,
        [{"name": m.name, "score": m.score, "keys": ", ".join(m.matched_keys)} for m in res.ranked],
        [(k, _setting_words(k, v), conf.sources.get(k, "")) for k, v in values.items()],
        history,
    )


def _setting_words(name: str, value: Any) -> str:
    if name == "bandwidthPerMigration":
        return "0 (no limit)" if not value else f"{short_bytes(int(value))}/s"
    if value is None:
        return "(primary network)" if name == "network" else "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
