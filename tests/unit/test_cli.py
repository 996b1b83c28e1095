"""The `livemig explain` and `livemig lint` commands, as a user runs them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from livemig.cli.main import app
from livemig.lint import CODES

from ..conftest import REPO

CLUSTER = str(REPO / "examples/cluster")
runner = CliRunner()


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_explain_json_has_the_documented_keys_for_every_vmi() -> None:
    code, out, _ = run("explain", "-f", CLUSTER, "-o", "json")
    assert code == 0
    items = json.loads(out)
    assert {(i["namespace"], i["name"]) for i in items} == {
        ("db-prod", "postgres-0"),
        ("default", "my-vm"),
        ("hpc", "hpc-solver"),
        ("hpc", "reporting-db"),
        ("web", "frontend-1"),
        ("web", "frontend-2"),
    }
    for item in items:
        assert {"namespace", "name", "policy", "configuration", "sources"} <= item.keys()
        assert len(item["configuration"]) == 10  # the ten settings, maxDowntimeMs included
        assert isinstance(item["configuration"]["bandwidthPerMigration"], int)
        assert item["sources"].keys() == item["configuration"].keys()


def test_explain_shows_policy_settings_and_their_sources() -> None:
    _, out, _ = run("explain", "-f", CLUSTER, "-o", "json", "frontend-1")
    (item,) = json.loads(out)
    assert item["policy"] == "frontend-slow-lane"
    assert item["configuration"]["bandwidthPerMigration"] == 32 * 2**20
    assert item["sources"]["bandwidthPerMigration"] == "MigrationPolicy/frontend-slow-lane"
    assert item["configuration"]["completionTimeoutPerGiB"] == 800
    assert item["sources"]["completionTimeoutPerGiB"] == (
        "HyperConverged/openshift-cnv/kubevirt-hyperconverged"
    )
    assert item["sources"]["network"] == "default"
    assert item["acceptableCompletionSeconds"] == 1600  # 800 s/GiB × 2 GiB


def test_precedence_option_changes_the_winner_and_both_say_the_other_rule_differs() -> None:
    _, out, _ = run("explain", "-f", CLUSTER, "-o", "json", "postgres-0")
    documented = json.loads(out)[0]
    _, out, _ = run(
        "explain", "-f", CLUSTER, "-o", "json", "postgres-0", "--policy-precedence", "kubevirt"
    )
    kubevirt = json.loads(out)[0]
    assert (documented["policy"], documented["otherRulePolicy"]) == (
        "critical-tier",
        "heavy-databases",
    )
    assert (kubevirt["policy"], kubevirt["otherRulePolicy"]) == ("heavy-databases", "critical-tier")
    assert kubevirt["configuration"]["allowPostCopy"] is True


def test_explain_table_explains_the_tie_break_and_runner_up() -> None:
    code, out, _ = run("explain", "-f", CLUSTER, "postgres-0")
    assert code == 0
    assert "MigrationPolicy/critical-tier" in out
    assert "matched label keys [tier] sort before [workload]" in out
    assert "runner-up: MigrationPolicy/heavy-databases" in out
    assert "the KubeVirt precedence rule picks MigrationPolicy/heavy-databases" in out


def test_a_vm_without_vmi_is_explained_as_its_template() -> None:
    _, out, _ = run("explain", "-f", CLUSTER, "-o", "yaml", "my-vm")
    (item,) = yaml.safe_load(out)
    assert item["kind"] == "VirtualMachine"
    assert item["policy"] == "production-vms"  # via the template's labels
    assert item["score"] == 3


def test_explain_filters_by_namespace_and_reports_unknown_names() -> None:
    _, out, _ = run("explain", "-f", CLUSTER, "-n", "web", "-o", "json")
    assert {i["name"] for i in json.loads(out)} == {"frontend-1", "frontend-2"}
    code, _, err = run("explain", "-f", CLUSTER, "nope")
    assert code == 1 and "no VMI or VM named nope" in err


def test_explain_reads_stdin() -> None:
    text = (REPO / "examples/cluster/cluster-dump.yaml").read_text()
    code, out, _ = run("explain", "-f", "-", "-o", "json", "hpc-solver", stdin=text)
    assert code == 0 and json.loads(out)[0]["policy"] == "production-vms"


def test_explain_on_bad_input_lists_every_problem_and_fails(
    yaml_file: Callable[..., Path],
) -> None:
    bad = yaml_file("""
    apiVersion: migrations.kubevirt.io/v1alpha1
    kind: MigrationPolicy
    metadata: {name: p}
    spec:
      allowPostcopy: true
      bandwidthPerMigration: 64Mb
      selectors: {}
    """)
    code, out, err = run("explain", "-f", str(bad))
    assert code == 1 and out == ""
    assert f"{bad}:5: MigrationPolicy/p: spec.allowPostcopy: unknown field" in err
    assert f"{bad}:6: MigrationPolicy/p: spec.bandwidthPerMigration: '64Mb'" in err
    assert "2 problems found; nothing was loaded." in err


def test_lint_json_findings_and_exit_status(yaml_file: Callable[..., Path]) -> None:
    hco = yaml_file("""
    apiVersion: hco.kubevirt.io/v1beta1
    kind: HyperConverged
    metadata: {name: kubevirt-hyperconverged, namespace: openshift-cnv}
    spec:
      liveMigrationConfig: {parallelMigrationsPerCluster: 0, allowPostCopy: true}
    """)
    code, out, _ = run("lint", "-f", str(hco), "-o", "json")
    findings = json.loads(out)
    assert code == 1
    assert {f["code"] for f in findings} == {"LM105", "LM106", "LM111"}
    for f in findings:
        assert {"severity", "code", "object", "field", "message"} <= f.keys()


def test_lint_reports_load_errors_as_findings(yaml_file: Callable[..., Path]) -> None:
    bad = yaml_file("a: 1\na: 2\n")
    code, out, _ = run("lint", "-f", str(bad), "-o", "json")
    assert code == 1
    assert sorted(f["code"] for f in json.loads(out)) == ["LM001", "LM002", "LM002"]


def test_lint_passes_on_the_example_cluster() -> None:
    code, out, _ = run("lint", "-f", CLUSTER)
    assert code == 0
    assert "LM114" in out  # the tie the example shows on purpose


def test_the_installed_command_runs() -> None:
    exe = Path(sys.executable).parent / "livemig"
    proc = subprocess.run(
        [str(exe), "explain", "-f", CLUSTER, "-o", "summary"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(
        r"hpc\s+reporting-db\s+heavy-databases\s+1\s+unlimited\s+300\s+yes", proc.stdout
    )


README = (REPO / "README.md").read_text()


@pytest.mark.parametrize("code", sorted(CODES))
def test_readme_documents_every_lint_code(code: str) -> None:
    severity, _ = CODES[code]
    assert re.search(rf"\|\s*{code}\s*\|\s*{severity.value}\s*\|", README), code


def test_readme_starts_with_the_setup_and_test_commands() -> None:
    blocks = re.findall(r"```(?:sh|bash)?\n(.*?)```", README, re.S)
    assert "livemig explain -f examples/" in blocks[0] or "livemig demo" in blocks[0]
    ci = (REPO / ".ci/run").read_text()
    assert blocks[1].strip() in ci
