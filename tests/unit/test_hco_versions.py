"""HyperConverged hco.kubevirt.io/v1 keeps the live-migration settings at
spec.virtualization.liveMigrationConfig, v1beta1 at spec.liveMigrationConfig: both are read,
strictly, and either version's settings in the other's place is an error, never ignored."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from livemig.api.loading import LoadResult
from livemig.errors import Problem
from livemig.inventory import Inventory
from livemig.lint import lint
from livemig.policy import effective_configuration

SETTINGS = """
    allowPostCopy: true
    completionTimeoutPerGiB: 20
    parallelOutboundMigrationsPerNode: 1
    bandwidthPerMigration: 64Mi
"""
V1BETA1 = """
apiVersion: hco.kubevirt.io/v1beta1
kind: HyperConverged
metadata: {name: kubevirt-hyperconverged, namespace: openshift-cnv}
spec:
  evictionStrategy: LiveMigrateIfPossible
  liveMigrationConfig:
""" + SETTINGS.replace("\n    ", "\n    ")
V1 = """
apiVersion: hco.kubevirt.io/v1
kind: HyperConverged
metadata: {name: kubevirt-hyperconverged, namespace: openshift-cnv}
spec:
  virtualization:
    evictionStrategy: LiveMigrateIfPossible
    liveMigrationConfig:
""" + SETTINGS.replace("\n    ", "\n      ")


def test_v1_and_v1beta1_give_the_same_effective_configuration(
    load_text: Callable[[str], LoadResult],
) -> None:
    configs = []
    for text in (V1BETA1, V1):
        inv = Inventory.from_objects(o.obj for o in load_text(text).objects)
        configs.append((effective_configuration(inv.cluster), inv.cluster.eviction_strategy))
    (beta, beta_eviction), (v1, v1_eviction) = configs
    assert beta.as_dict() == v1.as_dict()
    assert v1.completion_timeout_per_gib == 20 and v1.allow_post_copy
    assert v1.parallel_outbound_migrations_per_node == 1
    assert v1.bandwidth_per_migration == 64 * 2**20
    assert v1.sources["allowPostCopy"] == "HyperConverged/openshift-cnv/kubevirt-hyperconverged"
    assert beta_eviction == v1_eviction == "LiveMigrateIfPossible"


def test_lint_of_a_v1_object_reads_its_settings(load_text: Callable[[str], LoadResult]) -> None:
    inv = Inventory.from_objects(o.obj for o in load_text(V1).objects)
    findings = lint(inv, [])
    post_copy = [f for f in findings if f.code == "LM111"]
    assert post_copy and post_copy[0].field == (
        "spec.virtualization.liveMigrationConfig.allowPostCopy"
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            V1BETA1.replace("hco.kubevirt.io/v1beta1", "hco.kubevirt.io/v1"),
            "at the top of spec is v1beta1's place; hco.kubevirt.io/v1 keeps it under "
            "spec.virtualization",
        ),
        (
            V1.replace("hco.kubevirt.io/v1", "hco.kubevirt.io/v1beta1"),
            "which is hco.kubevirt.io/v1's shape: use apiVersion: hco.kubevirt.io/v1",
        ),
        (
            V1.replace("allowPostCopy", "allowPostcopy"),
            'unknown field "allowPostcopy" (did you mean allowPostCopy?)',
        ),
        (
            V1.replace("hco.kubevirt.io/v1", "hco.kubevirt.io/v2"),
            "does not serve kind HyperConverged",
        ),
    ],
    ids=["v1-with-v1beta1-places", "v1beta1-with-v1-shape", "typo", "v2"],
)
def test_settings_in_the_wrong_place_for_the_version_are_errors(
    problems_of: Callable[[str], list[Problem]], text: str, words: str
) -> None:
    problems = problems_of(text)
    assert any(words in p.message for p in problems), [p.message for p in problems]
