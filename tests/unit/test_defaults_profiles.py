"""Defaults by release: the document's and KubeVirt's (150 s/GiB, 2 per node) and the
HyperConverged operator's since 1.20 (20 s/GiB, 1 per node); every view names the profile."""

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
from livemig.policy import DefaultsProfile, effective_configuration

HCO = """
apiVersion: hco.kubevirt.io/v1beta1
kind: HyperConverged
metadata: {name: kubevirt-hyperconverged, namespace: openshift-cnv}
spec:
  liveMigrationConfig: {bandwidthPerMigration: 64Mi}
"""


@pytest.mark.parametrize(
    ("profile", "timeout", "per_node"),
    [
        (DefaultsProfile.DOCUMENT, 150, 2),
        (DefaultsProfile.KUBEVIRT, 150, 2),
        (DefaultsProfile.HCO_1_20, 20, 1),
    ],
)
def test_each_profile_fills_what_nobody_set(
    load_text: Callable[[str], LoadResult], profile: DefaultsProfile, timeout: int, per_node: int
) -> None:
    inv = Inventory.from_objects((o.obj for o in load_text(HCO).objects), profile)
    conf = effective_configuration(inv.cluster)
    assert conf.completion_timeout_per_gib == timeout
    assert conf.parallel_outbound_migrations_per_node == per_node
    assert conf.is_default("completionTimeoutPerGiB")
    assert conf.bandwidth_per_migration == 64 * 2**20  # what the user set is not a default
    assert conf.parallel_migrations_per_cluster == 5 and conf.progress_timeout == 150


def test_explain_names_the_profile_in_every_view(tmp_path: Path) -> None:
    dump = tmp_path / "d.yaml"
    dump.write_text(
        HCO + "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\n"
        "metadata: {name: v, namespace: default}\nspec: {domain: {memory: {guest: 2Gi}}}\n"
    )
    runner = CliRunner()
    table = runner.invoke(app, ["explain", "-f", str(dump), "--defaults", "hco-1.20"])
    assert table.exit_code == 0, table.stderr
    assert "defaults: hco-1.20 (the HyperConverged operator's since release 1.20" in table.stdout
    assert "20 s/GiB → 40 s for 2 GiB" in table.stdout
    summary = runner.invoke(app, ["explain", "-f", str(dump), "-o", "summary"])
    assert "defaults: document (the OpenShift document's" in summary.stdout
    items = json.loads(runner.invoke(app, ["explain", "-f", str(dump), "-o", "json"]).stdout)
    assert items[0]["defaults"] == "document"


def test_lint_notes_150_on_an_operator_of_release_1_20(
    load_text: Callable[[str], LoadResult],
) -> None:
    dump = (
        HCO.replace("{bandwidthPerMigration: 64Mi}", "{completionTimeoutPerGiB: 150}")
        + "status:\n  versions:\n  - {name: operator, version: 1.20.1}\n"
    )
    inv = Inventory.from_objects(o.obj for o in load_text(dump).objects)
    (found,) = [f for f in lint(inv, []) if f.code == "LM118"]
    assert found.field == "spec.liveMigrationConfig.completionTimeoutPerGiB"
    older = dump.replace("1.20.1", "1.19.3")
    inv = Inventory.from_objects(o.obj for o in load_text(older).objects)
    assert not [f for f in lint(inv, []) if f.code == "LM118"]
