"""What a set of loaded objects says about a cluster: its settings, namespaces, policies, VMIs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from livemig.api.models import (
    HyperConverged,
    KubeVirt,
    MigrationPolicy,
    Namespace,
    Resource,
    VirtualMachine,
    VirtualMachineInstance,
    VMISpec,
)
from livemig.policy import ClusterConfig, PolicyIndex, Precedence, Resolution, cluster_config


@dataclass(frozen=True, slots=True)
class Workload:
    """A VMI, or a VirtualMachine standing in for the VMI its template would become."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    spec: VMISpec
    source: Resource  # the VMI, or the VM when no VMI of that name was given

    @property
    def ref(self) -> str:
        return self.source.ref

    @property
    def memory_bytes(self) -> int | None:
        return self.spec.memory_bytes()


@dataclass(frozen=True)
class Inventory:
    hyperconverged: tuple[HyperConverged, ...]
    kubevirt: tuple[KubeVirt, ...]
    policies: tuple[MigrationPolicy, ...]
    namespaces: Mapping[str, Namespace]
    workloads: tuple[Workload, ...]

    @classmethod
    def from_objects(cls, objects: Iterable[Resource]) -> Inventory:
        objs = list(objects)
        vmis = [o for o in objs if isinstance(o, VirtualMachineInstance)]
        have_vmi = {(v.namespace, v.name) for v in vmis}
        workloads = [
            Workload(v.namespace or "default", v.name, v.metadata.labels, v.spec, v) for v in vmis
        ]
        # A VM's template labels become its VMI's labels (SPEC §3).
        workloads += [
            Workload(
                vm.namespace or "default",
                vm.name,
                vm.spec.template.metadata.labels,
                vm.spec.template.spec,
                vm,
            )
            for vm in objs
            if isinstance(vm, VirtualMachine) and (vm.namespace, vm.name) not in have_vmi
        ]
        workloads.sort(key=lambda w: (w.namespace, w.name))
        return cls(
            hyperconverged=tuple(o for o in objs if isinstance(o, HyperConverged)),
            kubevirt=tuple(o for o in objs if isinstance(o, KubeVirt)),
            policies=tuple(
                sorted((o for o in objs if isinstance(o, MigrationPolicy)), key=lambda p: p.name)
            ),
            namespaces={o.name: o for o in objs if isinstance(o, Namespace)},
            workloads=tuple(workloads),
        )

    @property
    def cluster(self) -> ClusterConfig:
        return cluster_config(self.hyperconverged, self.kubevirt)

    def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        ns = self.namespaces.get(namespace)
        return ns.metadata.labels if ns else {}

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
        return [
            (w, index.resolve(w.namespace, self.namespace_labels(w.namespace), w.labels))
            for w in workloads
        ]
