"""KubeVirt's other kinds in real dumps are skipped, not mistaken for typos; a VM whose memory
comes from an instancetype gets it for its acceptable completion time."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from livemig.api.loading import LoadResult
from livemig.cli.main import app
from livemig.inventory import Inventory
from livemig.lint import lint

VM = """
---
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: db, namespace: prod}
spec:
  runStrategy: Always
  instancetype: {KIND_LINE name: u1.large}
  template:
    spec:
      domain: {devices: {}}
"""
CLUSTER_TYPE = """
---
apiVersion: instancetype.kubevirt.io/v1beta1
kind: VirtualMachineClusterInstancetype
metadata: {name: u1.large}
spec:
  cpu: {guest: 2}
  memory: {guest: 8Gi}
"""
NAMESPACED_TYPE = """
---
apiVersion: instancetype.kubevirt.io/v1beta1
kind: VirtualMachineInstancetype
metadata: {name: u1.large, namespace: prod}
spec:
  cpu: {guest: 2}
  memory: {guest: 2Gi}
"""


def workload_memory(load_text: Callable[[str], LoadResult], text: str) -> int | None:
    inv = Inventory.from_objects(o.obj for o in load_text(text).objects)
    (w,) = inv.workloads
    return w.memory_bytes


def test_a_vm_gets_its_memory_from_its_cluster_instancetype(
    load_text: Callable[[str], LoadResult],
) -> None:
    text = VM.replace("KIND_LINE ", "") + CLUSTER_TYPE + NAMESPACED_TYPE
    assert workload_memory(load_text, text) == 8 * 2**30  # the default kind is the cluster one


def test_explain_times_a_vm_by_its_namespaced_instancetype(tmp_path: Path) -> None:
    text = VM.replace("KIND_LINE", "kind: VirtualMachineInstancetype,") + CLUSTER_TYPE
    dump = tmp_path / "dump.yaml"
    dump.write_text(text + NAMESPACED_TYPE)
    result = CliRunner().invoke(app, ["explain", "-f", str(dump), "-o", "json"])
    assert result.exit_code == 0, result.stderr
    (item,) = json.loads(result.stdout)
    assert item["memoryBytes"] == 2 * 2**30
    assert item["acceptableCompletionSeconds"] == 300  # 150 s/GiB × 2 GiB


def test_a_missing_instancetype_is_named_by_lint(load_text: Callable[[str], LoadResult]) -> None:
    inv = Inventory.from_objects(o.obj for o in load_text(VM.replace("KIND_LINE ", "")).objects)
    (finding,) = [f for f in lint(inv, []) if f.code == "LM116"]
    assert "VirtualMachineClusterInstancetype/u1.large is not in the input" in finding.message
    assert "oc get virtualmachineclusterinstancetypes -o yaml" in finding.message


@pytest.mark.parametrize(
    "kind",
    [
        "VirtualMachinePreference",
        "VirtualMachineClusterPreference",
        "VirtualMachinePool",
        "VirtualMachineInstanceReplicaSet",
        "VirtualMachineInstancePreset",
        "VirtualMachineSnapshot",
        "DataVolume",
    ],
)
def test_other_kubevirt_kinds_are_skipped_not_taken_for_typos(
    load_text: Callable[[str], LoadResult], kind: str
) -> None:
    loaded = load_text(f"apiVersion: kubevirt.io/v1\nkind: {kind}\nmetadata: {{name: x}}\n")
    assert [s.kind for s in loaded.skipped] == [kind]
