"""Typed views of stored objects for the controller's decisions: nodes with the memory in use on
them, the VMIs on a node being drained, and a node's drain request. The controller and the CLI
(``drain --dry-run``, ``get nodes``) read the cluster through these, so both judge alike."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

from livemig.api.lifecycle import MigrationObject
from livemig.api.loading import validate
from livemig.api.models import Resource, VirtualMachineInstance
from livemig.api.status import node_ready
from livemig.api.vmi_status import VMIPhase, VMIStatus
from livemig.errors import LivemigError
from livemig.evacuation import DRAIN_TAINT, Resident
from livemig.informer import key_of
from livemig.inventory import Inventory
from livemig.policy import DefaultsProfile
from livemig.scheduling import NodeView, Placement, choose_node, memory_in_use


def typed_vmi(raw: dict[str, Any]) -> VirtualMachineInstance | None:
    """The VMI, or None for one that does not validate (it is reported where it is placed)."""
    try:
        vmi = validate(raw)
    except LivemigError:
        return None
    return vmi if isinstance(vmi, VirtualMachineInstance) else None


def valid_objects(raws: Iterable[dict[str, Any]]) -> list[Resource]:
    """The objects that validate; the others are left out (the controller reports them on
    themselves)."""
    out = []
    for raw in raws:
        try:
            out.append(validate(raw))
        except LivemigError:
            continue
    return out


def inventory_of(
    raws: Iterable[dict[str, Any]],
    defaults: DefaultsProfile = DefaultsProfile.DOCUMENT,
    more: Sequence[Resource] = (),
) -> Inventory:
    """Cluster settings, policies, namespaces… from stored objects, for the pure rules."""
    return Inventory.from_objects([*valid_objects(raws), *more], defaults)


def memory_of(raw: dict[str, Any]) -> int:
    """A VMI's memory for accounting; 0 for one that does not validate."""
    vmi = typed_vmi(raw)
    return (vmi.spec.memory_bytes() or 0) if vmi is not None else 0


def memory_used(
    vmis: Sequence[dict[str, Any]], migrations: Sequence[dict[str, Any]]
) -> dict[str, int]:
    """Bytes in use per node (see decisions.memory_in_use)."""
    placements = []
    for raw in vmis:
        st = VMIStatus.of(raw)
        node = st.node if not st.finished else None
        placements.append(Placement(key_of(raw), node, memory_of(raw) if node else 0))
    typed = [MigrationObject.of(raw) for raw in migrations]
    return memory_in_use(placements, [(m.vmi_key, m.status) for m in typed])


def node_view(raw: dict[str, Any], used: dict[str, int], ready: bool | None = None) -> NodeView:
    name = raw["metadata"]["name"]
    capacity = int(((raw.get("status") or {}).get("capacity") or {}).get("memoryBytes", 0))
    return NodeView(
        name,
        node_ready(raw) if ready is None else ready,
        bool((raw.get("spec") or {}).get("unschedulable")),
        capacity,
        used.get(name, 0),
        dict(raw["metadata"].get("labels") or {}),
        frozenset(node_networks(raw)),
    )


def node_networks(raw: dict[str, Any]) -> dict[str, str]:
    """The node's address on each named network, as its agent reports them."""
    out = {}
    for n in (raw.get("status") or {}).get("networks") or []:
        if isinstance(n, dict) and n.get("name") and n.get("address"):
            out[str(n["name"])] = str(n["address"])
    return out


def node_views(
    nodes: Sequence[dict[str, Any]],
    vmis: Sequence[dict[str, Any]],
    migrations: Sequence[dict[str, Any]],
) -> list[NodeView]:
    used = memory_used(vmis, migrations)
    return [node_view(raw, used) for raw in nodes]


def residents(node: str, vmis: Sequence[dict[str, Any]]) -> list[Resident]:
    """The VMIs that still run (or are about to) on ``node``."""
    out = []
    for raw in vmis:
        st = VMIStatus.of(raw)
        if not st.on(node):
            continue
        ns, name = key_of(raw)
        vmi = typed_vmi(raw)
        out.append(
            Resident(
                ns or "default",
                name,
                (vmi.spec.memory_bytes() or 0) if vmi else 0,
                st.phase is VMIPhase.RUNNING,
                vmi.spec.eviction_strategy if vmi else None,
                dict(vmi.spec.node_selector) if vmi else {},
                str(raw["metadata"].get("creationTimestamp", "")),
            )
        )
    return out


def drain_taint(raw: dict[str, Any], key: str = DRAIN_TAINT) -> dict[str, Any] | None:
    """The node's drain taint, if it carries one."""
    for taint in (raw.get("spec") or {}).get("taints") or []:
        if isinstance(taint, dict) and taint.get("key") == key:
            return taint
    return None


def drain_key(settings: object) -> str:
    """The drain taint key: the KubeVirt CR's ``nodeDrainTaintKey``, else KubeVirt's default."""
    return str(getattr(settings, "node_drain_taint_key", None) or DRAIN_TAINT)


def vmis_on(node: str, vmis: Collection[dict[str, Any]]) -> int:
    return sum(VMIStatus.of(v).on(node) for v in vmis)


def cordon_node(node: dict[str, Any], cordon: bool, drain: bool | None, key: str, now: str) -> bool:
    """Cordon or uncordon ``node`` (in place); add (True) or remove (False) its drain taint
    (``key``, stamped ``now`` when added), or leave it (None). True if anything changed."""
    spec = node.setdefault("spec", {})
    before = (bool(spec.get("unschedulable")), list(spec.get("taints") or []))
    if cordon:
        spec["unschedulable"] = True
    else:
        spec.pop("unschedulable", None)
    taints = list(spec.get("taints") or [])
    if drain is not None:
        present = drain_taint(node, key)
        taints = [t for t in taints if t.get("key") not in (key, DRAIN_TAINT)]
        if drain:
            taints.append(present or {"key": key, "effect": "NoSchedule", "timeAdded": now})
    spec["taints"] = taints
    if not taints:
        spec.pop("taints")
    return (bool(spec.get("unschedulable")), list(spec.get("taints") or [])) != before


def can_migrate_now(raw: dict[str, Any], nodes: Sequence[NodeView], network: str | None) -> bool:
    """Whether another node could take this running VMI now (room, nodeSelector, the
    dedicated migration network): ``get vmis -o wide``'s LIVE-MIGRATABLE."""
    st = VMIStatus.of(raw)
    vmi = typed_vmi(raw)
    if st.phase is not VMIPhase.RUNNING or vmi is None:
        return False
    target, _ = choose_node(
        nodes, vmi.spec.memory_bytes() or 0, vmi.spec.node_selector, st.node, network
    )
    return target is not None
