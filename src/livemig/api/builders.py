"""Builders of the API objects livemig itself creates or offers to users: migration requests
and VirtualMachines that boot the built-in test guest. They live here, below every component,
so the CLI, the controller, the demo, the tests and the benchmarks build them one way."""

from __future__ import annotations

from typing import Any

from livemig.api.lifecycle import EVACUATION_ANNOTATION

MIGRATION_KIND = "VirtualMachineInstanceMigration"
#: Older livemig marked evacuations with this annotation; still read as system-maintenance.
PRIORITY_ANNOTATION = "livemig.io/priority"
TEST_GUEST_IMAGE = "livemig/test-guest"
DIRTY_RATE = "livemig.io/dirty-rate"
WORKING_SET = "livemig.io/working-set"


def migration_request(
    name: str,
    vmi: str,
    namespace: str = "default",
    evacuation: bool = False,
    priority: str | None = None,
) -> dict[str, Any]:
    """A VirtualMachineInstanceMigration asking to move ``vmi``. As KubeVirt does, a drain's
    (``evacuation``) carries priority system-maintenance, admitted after user-triggered ones."""
    spec: dict[str, Any] = {"vmiName": vmi}
    chosen = "system-maintenance" if evacuation else priority
    if chosen is not None:
        spec["priority"] = chosen
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": MIGRATION_KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def evacuation_request(name: str, vmi: str, namespace: str, node: str) -> dict[str, Any]:
    """The migration a drain of ``node`` makes for ``vmi``: priority system-maintenance and
    KubeVirt's ``kubevirt.io/evacuationMigration`` annotation naming the node."""
    out = migration_request(name, vmi, namespace, evacuation=True)
    out["metadata"]["annotations"] = {EVACUATION_ANNOTATION: node}
    return out


def make_test_guest_vm(
    name: str,
    namespace: str = "default",
    labels: dict[str, str] | None = None,
    dirty_rate: str = "0",
    working_set: str = "32Mi",
    memory: str = "128Mi",
) -> dict[str, Any]:
    """A running VirtualMachine that boots the built-in test guest with this load."""
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "runStrategy": "Always",
            "template": {
                "metadata": {
                    "labels": labels or {},
                    "annotations": {DIRTY_RATE: dirty_rate, WORKING_SET: working_set},
                },
                "spec": {
                    "domain": {"memory": {"guest": memory}, "devices": {}},
                    "volumes": [{"name": "root", "containerDisk": {"image": TEST_GUEST_IMAGE}}],
                },
            },
        },
    }


def hyperconverged(**settings: Any) -> dict[str, Any]:
    """OpenShift's HyperConverged object (v1beta1) with these live-migration settings."""
    return {
        "apiVersion": "hco.kubevirt.io/v1beta1",
        "kind": "HyperConverged",
        "metadata": {"name": "kubevirt-hyperconverged", "namespace": "openshift-cnv"},
        "spec": {"liveMigrationConfig": settings},
    }
