"""What a set of loaded objects says about a cluster: its settings, namespaces, policies, VMIs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from livemig.api.models import (
    HyperConverged,
    KubeVirt,
    MigrationPolicy,
    Namespace,
    Resource,
    VirtualMachine,
    VirtualMachineInstance,
    VirtualMachineInstancetype,
    VMISpec,
)
from livemig.bulk import gc_paused
from livemig.policy import (
    ClusterConfig,
    DefaultsProfile,
    MigrationConfiguration,
    PolicyIndex,
    Precedence,
    Resolution,
    cluster_config,
    effective_configuration,
)


@dataclass(frozen=True, slots=True)
class Workload:
    """A VMI, or a VirtualMachine standing in for the VMI its template would become."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    spec: VMISpec
    source: Resource  # the VMI, or the VM when no VMI of that name was given
    #: A VM's memory from its instancetype, when its template gives none.
    instancetype_memory: int | None = None
    #: Why the memory is unknown, when a VM names an instancetype missing from the input.
    memory_note: str | None = None

    @property
    def ref(self) -> str:
        return self.source.ref

    @property
    def memory_bytes(self) -> int | None:
        own = self.spec.memory_bytes()
        return own if own is not None else self.instancetype_memory


def _vm_workload(
    vm: VirtualMachine,
    namespace: str,
    instancetypes: Mapping[tuple[str, str, str], VirtualMachineInstancetype],
) -> Workload:
    """The VMI a VM's template would start; its memory from the instancetype if it names one
    (KubeVirt expands the instancetype into the VMI it starts)."""
    spec = vm.spec.template.spec
    matcher = vm.spec.instancetype
    if matcher is None or spec.memory_bytes() is not None:
        return Workload(namespace, vm.name, vm.spec.template.metadata.labels, spec, vm)
    found = instancetypes.get((matcher.kind, matcher.namespace_for(namespace), matcher.name))
    memory = found.spec.memory.guest.to_bytes() if found and found.spec.memory else None
    note = None
    if found is None:
        note = (
            f"its instancetype {matcher.describe(namespace)} is not in the input "
            f"(add it: oc get {matcher.kind.lower()}s -o yaml)"
        )
    return Workload(namespace, vm.name, vm.spec.template.metadata.labels, spec, vm, memory, note)


@dataclass(frozen=True)
class Inventory:
    """The objects of one input, grouped the way policy resolution and lint need them."""

    hyperconverged: tuple[HyperConverged, ...]
    kubevirt: tuple[KubeVirt, ...]
    policies: tuple[MigrationPolicy, ...]
    namespaces: Mapping[str, Namespace]
    workloads: tuple[Workload, ...]
    defaults: DefaultsProfile = DefaultsProfile.DOCUMENT
    _configurations: dict[str | None, MigrationConfiguration] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def from_objects(
        cls, objects: Iterable[Resource], defaults: DefaultsProfile = DefaultsProfile.DOCUMENT
    ) -> Inventory:
        with gc_paused():
            return cls._from_objects(list(objects), defaults)

    @classmethod
    def _from_objects(cls, objs: list[Resource], defaults: DefaultsProfile) -> Inventory:
        by_kind: dict[str, list[Any]] = {}
        for o in objs:
            by_kind.setdefault(o.KIND, []).append(o)
        vmis: list[VirtualMachineInstance] = by_kind.get("VirtualMachineInstance", [])
        workloads = [
            Workload(v.namespace or "default", v.name, v.metadata.labels, v.spec, v) for v in vmis
        ]
        have_vmi = {(w.namespace, w.name) for w in workloads}
        # A VM's template labels become its VMI's labels (SPEC §3).
        vms: list[VirtualMachine] = by_kind.get("VirtualMachine", [])
        instancetypes = {
            (it.KIND, it.namespace or "", it.name): it
            for kind in ("VirtualMachineInstancetype", "VirtualMachineClusterInstancetype")
            for it in by_kind.get(kind, ())
        }
        workloads += [
            _vm_workload(vm, ns, instancetypes)
            for vm in vms
            if (ns := vm.namespace or "default", vm.name) not in have_vmi
        ]
        workloads.sort(key=lambda w: (w.namespace, w.name))
        return cls(
            hyperconverged=tuple(by_kind.get("HyperConverged", ())),
            kubevirt=tuple(by_kind.get("KubeVirt", ())),
            policies=tuple(sorted(by_kind.get("MigrationPolicy", ()), key=lambda p: p.name)),
            namespaces={o.name: o for o in by_kind.get("Namespace", ())},
            workloads=tuple(workloads),
            defaults=defaults,
        )

    @cached_property
    def cluster(self) -> ClusterConfig:
        return cluster_config(self.hyperconverged, self.kubevirt, self.defaults)

    def configuration(self, resolution: Resolution) -> MigrationConfiguration:
        """The effective configuration under the winning policy (computed once per policy)."""
        winner = resolution.winner
        key = winner.name if winner else None
        conf = self._configurations.get(key)
        if conf is None:
            conf = self._configurations[key] = effective_configuration(
                self.cluster, winner.policy if winner else None
            )
        return conf

    def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        ns = self.namespaces.get(namespace)
        return ns.metadata.labels if ns else {}

    def notes(self, w: Workload) -> list[str]:
        """What the input lacks that could change this workload's policy."""
        notes = []
        if w.namespace not in self.namespaces and any(
            p.spec.selectors.namespace_selector for p in self.policies
        ):
            notes.append(
                f"Namespace {w.namespace} is not in the input, so policies with a "
                "namespaceSelector cannot match; add it (oc get ns -o yaml)"
            )
        if w.memory_bytes is None:
            why = w.memory_note or "no memory size given"
            notes.append(f"{why}: the completion timeout cannot be computed")
        return notes

    def select(self, names: Sequence[str] = (), namespace: str | None = None) -> list[Workload]:
        """Workloads filtered by name (any of ``names``) and namespace."""
        return [
            w
            for w in self.workloads
            if (not names or w.name in names) and (namespace is None or w.namespace == namespace)
        ]

    def resolve_all(
        self, workloads: Sequence[Workload], precedence: Precedence
    ) -> list[tuple[Workload, Resolution]]:
        index = PolicyIndex(self.policies, precedence)
        with gc_paused():
            return [
                (w, index.resolve(w.namespace, self.namespace_labels(w.namespace), w.labels))
                for w in workloads
            ]
