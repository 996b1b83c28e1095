"""Every class of bad input is an error that names file, line, object and field."""

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from livemig.api.loading import LoadResult, load_paths
from livemig.api.models import (
    HyperConverged,
    MigrationPolicy,
    VirtualMachine,
    VirtualMachineInstance,
    to_dict,
)
from livemig.errors import LoadError, Problem

from ..conftest import REPO

Problems = Callable[[str], list[Problem]]
Load = Callable[[str], LoadResult]

POLICY = """
apiVersion: migrations.kubevirt.io/v1alpha1
kind: MigrationPolicy
metadata:
  name: prod-fast
spec:
  selectors:
    virtualMachineInstanceSelector:
      env: production
"""


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


def test_unknown_field_names_object_field_line_and_suggests_the_right_one(
    problems_of: Problems,
) -> None:
    p = only(problems_of(POLICY + "  allowPostcopy: true\n"))
    assert p.object == "MigrationPolicy/prod-fast"
    assert p.field == "spec.allowPostcopy"
    assert p.line == 9
    assert "did you mean allowPostCopy?" in p.message
    assert str(p).startswith(f"{p.file}:9: MigrationPolicy/prod-fast: spec.allowPostcopy:")


def test_unknown_field_without_a_close_match_lists_the_known_ones(problems_of: Problems) -> None:
    p = only(problems_of(POLICY + "  speed: fast\n"))
    assert "bandwidthPerMigration" in p.message and "allowPostCopy" in p.message


def test_unknown_field_deep_in_cluster_settings_is_found(problems_of: Problems) -> None:
    p = only(
        problems_of("""
        apiVersion: hco.kubevirt.io/v1beta1
        kind: HyperConverged
        metadata: {name: kubevirt-hyperconverged, namespace: openshift-cnv}
        spec:
          liveMigrationConfig:
            progresTimeout: 10
        """)
    )
    assert p.object == "HyperConverged/openshift-cnv/kubevirt-hyperconverged"
    assert p.field == "spec.liveMigrationConfig.progresTimeout"
    assert "did you mean progressTimeout?" in p.message
    assert p.line == 6


@pytest.mark.parametrize(
    ("value", "expect"),
    [
        ('"5"', 'expected an integer, got "5" (a string); write it without quotes: 5'),
        ("true", "expected an integer, got true (a boolean)"),
        ("5.0", "expected an integer, got 5.0 (a decimal number)"),
        ("-1", "must be 0 or more, got -1"),
        ("[1]", "expected an integer, got a list"),
    ],
)
def test_integers_must_be_integers(problems_of: Problems, value: str, expect: str) -> None:
    p = only(problems_of(POLICY + f"  completionTimeoutPerGiB: {value}\n"))
    assert p.field == "spec.completionTimeoutPerGiB"
    assert expect in p.message


def test_booleans_must_be_booleans(problems_of: Problems) -> None:
    p = only(problems_of(POLICY + '  allowPostCopy: "true"\n'))
    assert p.field == "spec.allowPostCopy"
    assert 'expected true or false, got "true" (a string)' in p.message


def test_unquoted_label_value_that_yaml_reads_as_boolean_says_to_quote_it(
    problems_of: Problems,
) -> None:
    p = only(problems_of(POLICY.replace("env: production", "hpc-workloads: True")))
    assert p.field == "spec.selectors.virtualMachineInstanceSelector.hpc-workloads"
    assert 'quote it: "true"' in p.message


def test_invalid_label_value_is_rejected(problems_of: Problems) -> None:
    p = only(problems_of(POLICY.replace("env: production", 'env: "-bad value"')))
    assert p.field == "spec.selectors.virtualMachineInstanceSelector"
    assert "'-bad value' is not valid" in p.message


def test_bad_quantity_suggests_the_kubernetes_spelling(problems_of: Problems) -> None:
    p = only(problems_of(POLICY + "  bandwidthPerMigration: 64Mb\n"))
    assert p.object == "MigrationPolicy/prod-fast"
    assert p.field == "spec.bandwidthPerMigration"
    assert "'64Mb' is not a quantity (did you mean 64Mi?)" in p.message


def test_negative_bandwidth_is_rejected(problems_of: Problems) -> None:
    p = only(problems_of(POLICY + "  bandwidthPerMigration: -1Mi\n"))
    assert "negative" in p.message


def test_missing_selectors_is_required(problems_of: Problems) -> None:
    p = only(
        problems_of("""
        apiVersion: migrations.kubevirt.io/v1alpha1
        kind: MigrationPolicy
        metadata: {name: p}
        spec:
          allowPostCopy: true
        """)
    )
    assert (p.field, p.message) == ("spec.selectors", "required field is missing")


def test_documents_vm_example_with_wrong_api_version_names_the_right_one(
    problems_of: Problems,
) -> None:
    p = only(
        problems_of("""
        apiVersion: migrations.kubevirt.io/v1alpha1
        kind: VirtualMachine
        metadata:
          name: my-vm
          namespace: default
        spec:
          template:
            metadata:
              labels: {kubevirt.io/environment: production}
        """)
    )
    assert p.object == "VirtualMachine/default/my-vm"
    assert p.field == "apiVersion"
    assert p.line == 1
    assert "use apiVersion: kubevirt.io/v1" in p.message


@pytest.mark.parametrize(
    ("name", "expect"),
    [("<vm_name>", "is not a valid name"), ("My-VM", "is not a valid name"), ("", "empty")],
)
def test_invalid_names_are_rejected(problems_of: Problems, name: str, expect: str) -> None:
    p = only(problems_of(POLICY.replace("name: prod-fast", f'name: "{name}"')))
    assert p.field == "metadata.name"
    assert expect in p.message


def test_missing_name_is_rejected(problems_of: Problems) -> None:
    p = only(problems_of(POLICY.replace("  name: prod-fast\n", "  labels: {a: b}\n")))
    assert (p.field, p.message) == ("metadata.name", "required field is missing")


def test_namespace_names_are_dns_labels(problems_of: Problems) -> None:
    p = only(
        problems_of("""
        apiVersion: v1
        kind: Namespace
        metadata: {name: team.a}
        """)
    )
    assert p.field == "metadata.name" and "DNS-1123 label" in p.message


def test_misspelled_kind_is_an_error_with_suggestion(problems_of: Problems) -> None:
    p = only(problems_of(POLICY.replace("kind: MigrationPolicy", "kind: MigrationPolcy")))
    assert p.field == "kind" and "did you mean MigrationPolicy?" in p.message


def test_enum_typo_suggests_the_value(problems_of: Problems) -> None:
    p = only(
        problems_of("""
        apiVersion: kubevirt.io/v1
        kind: VirtualMachineInstance
        metadata: {name: a, namespace: ns}
        spec:
          evictionStrategy: LiveMigrat
        """)
    )
    assert p.object == "VirtualMachineInstance/ns/a"
    assert p.field == "spec.evictionStrategy"
    assert "did you mean LiveMigrate?" in p.message


def test_running_and_run_strategy_together_are_rejected(problems_of: Problems) -> None:
    p = only(
        problems_of("""
        apiVersion: kubevirt.io/v1
        kind: VirtualMachine
        metadata: {name: a}
        spec:
          running: true
          runStrategy: Always
          template: {}
        """)
    )
    assert p.object == "VirtualMachine/default/a"
    assert "mutually exclusive" in p.message


def test_duplicate_keys_are_errors_with_both_lines(problems_of: Problems) -> None:
    p = only(problems_of(POLICY + "      env: staging\n"))
    assert p.line == 9
    assert p.object == "MigrationPolicy/prod-fast"
    assert "duplicate key 'env' (first at line 8)" in p.message


def test_yaml_syntax_error_has_a_line(problems_of: Problems) -> None:
    p = only(problems_of(POLICY + "  allowPostCopy: [true\n"))
    assert p.line is not None and p.line >= 9
    assert p.message.startswith("YAML syntax error")


def test_a_document_that_is_not_a_mapping_is_an_error(problems_of: Problems) -> None:
    assert "must be a YAML mapping" in only(problems_of("- a\n- b\n")).message


def test_missing_kind_and_api_version_are_reported(problems_of: Problems) -> None:
    problems = problems_of("metadata: {name: a}\n")
    assert {(p.field, p.message) for p in problems} == {
        ("apiVersion", "required field is missing"),
        ("kind", "required field is missing"),
    }


def test_loading_is_all_or_nothing_and_lists_every_error(
    yaml_file: Callable[..., Path],
) -> None:
    good = yaml_file(POLICY, "a-good.yaml")
    bad = yaml_file(
        POLICY.replace("prod-fast", "one")
        + "  allowPostcopy: true\n---\n"
        + POLICY.replace("prod-fast", "two")
        + "  bandwidthPerMigration: fast\n",
        "b-bad.yaml",
    )
    with pytest.raises(LoadError) as info:
        load_paths([str(good), str(bad)])
    problems = info.value.problems
    assert [(p.object, p.field) for p in problems] == [
        ("MigrationPolicy/one", "spec.allowPostcopy"),
        ("MigrationPolicy/two", "spec.bandwidthPerMigration"),
    ]
    assert problems[1].line == 20  # doc 2 starts with a blank line
    assert "2 problems in the input" in str(info.value)


def test_the_same_object_twice_is_an_error(yaml_file: Callable[..., Path]) -> None:
    a, b = yaml_file(POLICY), yaml_file(POLICY)
    with pytest.raises(LoadError) as info:
        load_paths([str(a), str(b)])
    p = only(list(info.value.problems))
    assert p.object == "MigrationPolicy/prod-fast" and "defined twice" in p.message


def test_missing_path_is_an_error() -> None:
    with pytest.raises(LoadError, match="no such file or folder"):
        load_paths(["/nonexistent/dump.yaml"])


def test_folders_are_read_recursively_and_other_files_ignored(
    yaml_file: Callable[..., Path], tmp_path: Path
) -> None:
    yaml_file(POLICY, "a/b/policy.yml")
    yaml_file(
        json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}),
        "a/ns.json",
    )
    yaml_file("not: [yaml", "a/notes.txt")
    result = load_paths([str(tmp_path / "a")])
    assert sorted(o.obj.ref for o in result.objects) == ["MigrationPolicy/prod-fast", "Namespace/x"]


def test_stdin_is_read_for_dash() -> None:
    result = load_paths(["-"], stdin=io.StringIO(POLICY))
    assert [o.obj.ref for o in result.objects] == ["MigrationPolicy/prod-fast"]


def test_list_items_are_loaded_and_errors_point_into_them(
    load_text: Load, problems_of: Problems
) -> None:
    listing = (
        "apiVersion: v1\nkind: List\nitems:\n"
        + "\n".join(
            "- " + line if i == 0 else "  " + line
            for i, line in enumerate(POLICY.strip().splitlines())
        )
        + "\n"
    )
    assert [o.obj.ref for o in load_text(listing).objects] == ["MigrationPolicy/prod-fast"]
    p = only(problems_of(listing + "    allowPostcopy: true\n"))
    assert p.field == "spec.allowPostcopy" and p.line == 12


def test_unknown_kinds_are_skipped_not_rejected(load_text: Load) -> None:
    result = load_text(POLICY + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    assert [s.kind for s in result.skipped] == ["ConfigMap"]
    assert len(result.objects) == 1


def test_example_cluster_dump_round_trips_intact() -> None:
    path = REPO / "examples/cluster/cluster-dump.yaml"
    raw_items = yaml.safe_load(path.read_text())["items"]
    result = load_paths([str(path)])
    assert [to_dict(o.obj) for o in result.objects] == raw_items


def test_server_set_fields_and_status_survive_and_timestamps_stay_strings() -> None:
    result = load_paths([str(REPO / "examples/cluster/cluster-dump.yaml")])
    vmi = next(v for v in result.of_kind(VirtualMachineInstance) if v.name == "postgres-0")
    dumped = to_dict(vmi)
    assert dumped["metadata"]["creationTimestamp"] == "2026-06-01T08:00:05Z"
    assert dumped["metadata"]["ownerReferences"][0]["kind"] == "VirtualMachine"
    assert dumped["status"]["nodeName"] == "worker-1"
    assert vmi.spec.memory_bytes() == 8 * 2**30
    hco = result.of_kind(HyperConverged)[0]
    assert to_dict(hco)["spec"]["featureGates"]["enableCommonBootImageImport"] is True


def test_examples_load_and_quantities_keep_their_spelling() -> None:
    result = load_paths(
        [
            str(REPO / "examples/document/9.2.4-migration-policy.yaml"),
            str(REPO / "examples/document/9.2.4-labelled-vm.yaml"),
        ]
    )
    policy = result.of_kind(MigrationPolicy)[0]
    assert policy.spec.selectors.namespace_selector == {
        "hpc-workloads": "True",
        "xyz-workloads-type": "",
    }
    vm = result.of_kind(VirtualMachine)[0]
    assert to_dict(vm)["spec"]["template"]["spec"]["domain"]["memory"]["guest"] == "6Gi"
