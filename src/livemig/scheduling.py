"""The controller's decisions as pure functions: which migrations to admit, where to put a VM.

SPEC §4: a migration is admitted only while fewer than parallelMigrationsPerCluster migrations
are between Scheduling and Running and fewer than parallelOutboundMigrationsPerNode of those
leave its VMI's node; admission is in KubeVirt's priority order (system-critical, then
user-triggered, then system-maintenance — what evacuations carry — then unset), then creation
order. A target node must be Ready, not cordoned, not the source, have enough free memory and
match the VMI's nodeSelector plus the migration's addedNodeSelector (the VM's keys win); the
least loaded one wins.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from livemig.api.lifecycle import MigrationObject, MigrationStatus, Phase
from livemig.api.quantity import short_bytes

#: Admission rank by spec.priority: lower goes first (KubeVirt 2026).
PRIORITY_RANK: dict[str | None, int] = {
    "system-critical": 0,
    "user-triggered": 1,
    "system-maintenance": 2,
    None: 3,
}
UNSET = PRIORITY_RANK[None]


def priority_rank(priority: str | None) -> int:
    return PRIORITY_RANK.get(priority, UNSET)


def target_selector(
    node_selector: Mapping[str, str], added: Mapping[str, str] | None
) -> dict[str, str]:
    """The labels a target node must have: the migration's addedNodeSelector narrows the VM's
    own nodeSelector and never overrides it (on a shared key the VM's value wins)."""
    return {**(added or {}), **node_selector}


@dataclass(frozen=True, slots=True)
class MigrationView:
    key: str  # namespace/name
    phase: Phase
    source_node: str | None
    priority: int = UNSET
    created: str = ""  # creationTimestamp (microseconds); ties broken by key


def admit(
    migrations: Sequence[MigrationView], per_cluster: int, per_node: int
) -> list[MigrationView]:
    """The pending migrations that may start now, in the order they should."""
    active = [m for m in migrations if m.phase.active]
    running = len(active)
    per_source = Counter(m.source_node for m in active)
    admitted = []
    pending = sorted(
        (m for m in migrations if m.phase is Phase.PENDING),
        key=lambda m: (m.priority, m.created, m.key),
    )
    for m in pending:
        if running >= per_cluster:
            break
        if per_source[m.source_node] >= per_node:
            continue  # its node is busy; a migration from another node may still go
        admitted.append(m)
        running += 1
        per_source[m.source_node] += 1
    return admitted


@dataclass(frozen=True, slots=True)
class NodeView:
    name: str
    ready: bool
    unschedulable: bool
    memory_capacity: int
    memory_used: int
    labels: Mapping[str, str]
    #: Named networks the node has an address on (``livemig agent --network NAME=ADDRESS``).
    networks: frozenset[str] = frozenset()

    @property
    def memory_free(self) -> int:
        return self.memory_capacity - self.memory_used


def choose_node(
    nodes: Sequence[NodeView],
    memory: int,
    node_selector: Mapping[str, str],
    exclude: str | None = None,
    network: str | None = None,
) -> tuple[NodeView | None, str]:
    """The least loaded node that fits, or None and why none does, node by node, in words:
    ``needs 6Gi: node-1 has 3.5Gi free; node-2 lacks label disktype=ssd``. With ``network``
    (the cluster's dedicated migration network) a node must have an address on it."""
    why: list[str] = []
    fits = []
    for n in nodes:
        if n.name == exclude:
            continue
        if not n.ready:
            why.append(f"{n.name} is not Ready")
            continue
        if n.unschedulable:
            why.append(f"{n.name} is cordoned")
            continue
        wrong = []
        if n.memory_free < memory:
            wrong.append(f"has {short_bytes(max(n.memory_free, 0))} free")
        wrong += _label_mismatches(n.labels, node_selector)
        if network is not None and network not in n.networks:
            wrong.append(f"has no address on migration network {network}")
        if wrong:
            why.append(f"{n.name} " + " and ".join(wrong))
        else:
            fits.append(n)
    if not fits:
        others = "; ".join(why) if why else "there is no other node"
        return None, f"no node fits: needs {short_bytes(memory)}: {others}"
    best = min(fits, key=lambda n: (n.memory_used / max(n.memory_capacity, 1), n.name))
    return best, f"{best.name} is the least loaded of {len(fits)} that fit"


def _label_mismatches(labels: Mapping[str, str], selector: Mapping[str, str]) -> list[str]:
    out = []
    for key, value in sorted(selector.items()):
        if key not in labels:
            out.append(f"lacks label {key}={value}")
        elif labels[key] != value:
            out.append(f"has label {key}={labels[key]}, not {value}")
    return out


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a VMI's memory is, for accounting: its node (None if unplaced or finished)."""

    vmi: tuple[str, str]  # namespace, name
    node: str | None
    memory: int


def memory_in_use(
    placements: Sequence[Placement], migrations: Sequence[tuple[tuple[str, str], MigrationStatus]]
) -> dict[str, int]:
    """Bytes in use per node: each VMI on its node, plus each migration's VM on its target from
    the moment the target is chosen until the VMI is handed over. Without the last part, a VM
    that just landed counts on neither node (its migration Succeeded, its VMI still names the
    source) and the next choice overcommits the target. ``migrations`` pairs each migration's
    VMI (namespace, name) with its status."""
    used: dict[str, int] = {}
    where = {p.vmi: p.node for p in placements}
    for p in placements:
        if p.node:
            used[p.node] = used.get(p.node, 0) + p.memory
    for vmi, st in migrations:
        coming = st.holds_slot or (st.succeeded and where.get(vmi) == st.source_node)
        if st.target_node and coming:
            used[st.target_node] = used.get(st.target_node, 0) + st.memory_bytes
    return used


def silent_nodes(last_heard: Mapping[str, float], now: float, timeout: float) -> dict[str, float]:
    """The Ready nodes not heard from for more than ``timeout`` seconds, and for how long,
    where ``last_heard`` says when the controller saw each one's heartbeat change (its own
    clock, not the agents').

    With several nodes, silence is measured against the latest heartbeat of any of them, not
    against now: when the control plane itself stalls (a disk that takes 30 s to fsync, a
    blocked API server), no heartbeat arrives from anyone and nobody is silent — failing every
    migration would turn a stall into an outage. Kubernetes' node lifecycle controller holds
    back the same way ("full disruption"). A lone node is judged against now."""
    if not last_heard:
        return {}
    reference = max(last_heard.values()) if len(last_heard) > 1 else now
    return {n: reference - t for n, t in last_heard.items() if reference - t > timeout}


def handover_pending(
    vmi_node: str | None, vmi_created: str, migrations: Sequence[MigrationObject]
) -> MigrationObject | None:
    """The migration that moved this VMI off ``vmi_node`` but whose hand-over is not written
    yet (it succeeded; the VMI still names its source), or None. Until then the source's QEMU
    is a stale copy: a migration started from it would roll the guest back. Only migrations
    of this VMI instance count (created since ``vmi_created``: a restarted VM is a new one)."""
    done = [m for m in migrations if m.status.succeeded and m.created >= vmi_created]
    if not done or vmi_node is None:
        return None
    newest = max(done, key=lambda m: (m.created, m.name))
    return newest if newest.status.source_node == vmi_node else None
