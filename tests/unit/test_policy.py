"""Policy matching, both precedence rules, and the merge into the effective configuration."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from livemig.api.models import HyperConverged, KubeVirt, MigrationPolicy
from livemig.migration import params_for
from livemig.policy import (
    DEFAULT,
    ClusterConfig,
    MigrationConfiguration,
    PolicyIndex,
    Precedence,
    cluster_config,
    effective_configuration,
    match_policy,
    resolve,
)

D, K = Precedence.DOCUMENTED, Precedence.KUBEVIRT


def policy(
    name: str, ns: dict[str, str] | None = None, vmi: dict[str, str] | None = None, **settings: Any
) -> MigrationPolicy:
    selectors: dict[str, Any] = {}
    if ns is not None:
        selectors["namespaceSelector"] = ns
    if vmi is not None:
        selectors["virtualMachineInstanceSelector"] = vmi
    return MigrationPolicy.model_validate(
        {
            "apiVersion": "migrations.kubevirt.io/v1alpha1",
            "kind": "MigrationPolicy",
            "metadata": {"name": name},
            "spec": {"selectors": selectors, **settings},
        }
    )


def hco(**settings: Any) -> ClusterConfig:
    obj = HyperConverged.model_validate(
        {
            "apiVersion": "hco.kubevirt.io/v1beta1",
            "kind": "HyperConverged",
            "metadata": {"name": "kubevirt-hyperconverged", "namespace": "openshift-cnv"},
            "spec": {"liveMigrationConfig": settings},
        }
    )
    return cluster_config([obj], [])


# --- matching --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ns_sel", "vmi_sel", "ns_labels", "vmi_labels", "score"),
    [
        ({}, {}, {}, {}, 0),  # empty selectors match every VMI, score 0
        (None, None, {"a": "1"}, {"b": "2"}, 0),
        ({"a": "1"}, {}, {"a": "1"}, {}, 1),
        ({"a": "1"}, {}, {"a": "2"}, {}, None),  # wrong value
        ({"a": "1"}, {}, {}, {"a": "1"}, None),  # namespace key looked up on the namespace only
        ({}, {"env": "prod"}, {"env": "prod"}, {}, None),  # and VMI keys on the VMI only
        ({}, {"env": "prod"}, {}, {"env": "prod", "x": "y"}, 1),
        ({"t": ""}, {}, {"t": ""}, {}, 1),  # "" matches a present, empty label
        ({"t": ""}, {}, {}, {}, None),  # ... but not a missing one
        ({"t": ""}, {}, {"t": "x"}, {}, None),
        (
            {"hpc": "True", "t": ""},
            {"kubevirt.io/environment": "production"},
            {"hpc": "True", "t": ""},
            {"kubevirt.io/environment": "production"},
            3,
        ),
        (
            {"hpc": "True", "t": ""},
            {"kubevirt.io/environment": "production"},
            {"hpc": "True"},
            {"kubevirt.io/environment": "production"},
            None,
        ),  # all must match
        ({"hpc": "True"}, {}, {"hpc": "true"}, {}, None),  # values are case-sensitive strings
    ],
)
def test_a_policy_applies_only_when_every_selector_entry_matches(
    ns_sel: dict[str, str] | None,
    vmi_sel: dict[str, str] | None,
    ns_labels: dict[str, str],
    vmi_labels: dict[str, str],
    score: int | None,
) -> None:
    m = match_policy(policy("p", ns_sel, vmi_sel), ns_labels, vmi_labels)
    assert (m.score if m else None) == score


# --- precedence ------------------------------------------------------------------------------

NS = {"tier": "critical", "zone": "a", "hpc": "True"}
VMI = {"workload": "db", "size": "large", "app": "pg"}

CASES = [
    # (description, policies, documented winner, kubevirt winner)
    (
        "higher score wins under both rules",
        [policy("z-two", NS | {}, {"workload": "db"}), policy("a-one", {"tier": "critical"})],
        "z-two",
        "z-two",
    ),
    (
        "tie: documented compares sorted matched keys, KubeVirt counts VMI-label matches",
        [policy("by-ns", {"tier": "critical"}), policy("by-vmi", vmi={"workload": "db"})],
        "by-ns",
        "by-vmi",
    ),
    (
        "tie with equal VMI counts: keys decide documented, name decides KubeVirt",
        [policy("b", vmi={"app": "pg"}), policy("a", vmi={"workload": "db"})],
        "b",
        "a",
    ),
    (
        "identical keys: lowest name wins under both",
        [policy("beta", vmi={"app": "pg"}), policy("alpha", vmi={"app": "pg"})],
        "alpha",
        "alpha",
    ),
    (
        "namespace and VMI keys are sorted together",
        [
            policy("p1", {"zone": "a"}, {"app": "pg"}),
            policy("p2", {"hpc": "True"}, {"size": "large"}),
        ],
        "p1",
        "p1",
    ),
    (
        "first differing key decides, not the last",
        [
            policy("p1", {"tier": "critical"}, {"app": "pg"}),
            policy("p2", {"hpc": "True"}, {"workload": "db"}),
        ],
        "p1",
        "p1",
    ),
    (
        "empty selectors lose to any matching selector",
        [policy("catch-all"), policy("z", vmi={"size": "large"})],
        "z",
        "z",
    ),
    (
        "a non-matching policy never wins",
        [policy("a", vmi={"size": "small"}), policy("b", vmi={"size": "large"})],
        "b",
        "b",
    ),
]


@pytest.mark.parametrize(
    ("desc", "policies", "documented", "kubevirt"), CASES, ids=[c[0] for c in CASES]
)
def test_precedence_rules(
    desc: str, policies: list[MigrationPolicy], documented: str, kubevirt: str
) -> None:
    d = resolve(policies, NS, VMI, D)
    k = resolve(policies, NS, VMI, K)
    assert d.winner is not None and d.winner.name == documented
    assert k.winner is not None and k.winner.name == kubevirt
    assert d.rules_disagree == (documented != kubevirt)
    assert d.other_rule_winner == (kubevirt if documented != kubevirt else None)


def test_the_reason_names_the_deciding_step() -> None:
    two = [policy("by-ns", {"tier": "critical"}), policy("by-vmi", vmi={"workload": "db"})]
    assert "matched label keys [tier] sort before [workload]" in resolve(two, NS, VMI, D).reason
    assert "more VMI-label matches (1 > 0)" in resolve(two, NS, VMI, K).reason
    names = [policy("b", vmi={"app": "pg"}), policy("a", vmi={"app": "pg"})]
    assert "policy name 'a' sorts first" in resolve(names, NS, VMI, D).reason
    assert resolve([policy("x")], NS, VMI, D).reason == "only applicable policy"
    assert resolve([], NS, VMI, D).reason == "no policy applies"
    scored = [policy("a", {"tier": "critical"}), policy("b", NS)]
    assert resolve(scored, NS, VMI, D).reason == "higher score (3 > 1)"


def test_runner_up_is_the_second_best() -> None:
    res = resolve(
        [policy("a"), policy("b", vmi={"app": "pg"}), policy("c", {"zone": "a"})], NS, VMI, D
    )
    assert [m.name for m in res.ranked] == ["b", "c", "a"]
    assert res.runner_up is not None and res.runner_up.name == "c"


def test_index_gives_the_same_answer_as_resolving_directly() -> None:
    policies = [p for _, ps, _, _ in CASES for p in ps]
    policies = list({p.name: p for p in policies}.values())
    label_sets = [
        VMI,
        {"app": "pg"},
        {},
        {"size": "large", "extra": "ignored"},
        {"size": "large", "extra": "other"},
    ]
    for precedence in (D, K):
        index = PolicyIndex(policies, precedence)
        for ns_labels in (NS, {}, {"tier": "critical"}):
            for labels in label_sets:
                got = index.resolve(str(sorted(ns_labels.items())), ns_labels, labels)
                want = resolve(policies, ns_labels, labels, precedence)
                assert [m.name for m in got.ranked] == [m.name for m in want.ranked]


# --- effective configuration -----------------------------------------------------------------


def test_defaults_apply_when_nothing_is_configured_and_are_marked() -> None:
    conf = effective_configuration(ClusterConfig())
    assert conf.as_dict() == {
        "bandwidthPerMigration": 0,
        "completionTimeoutPerGiB": 150,
        "parallelMigrationsPerCluster": 5,
        "parallelOutboundMigrationsPerNode": 2,
        "progressTimeout": 150,
        "allowPostCopy": False,
        "allowAutoConverge": False,
        "allowWorkloadDisruption": False,
        "network": None,
        "maxDowntimeMs": 300,
    }
    assert all(conf.is_default(k) for k in conf.as_dict())


def test_cluster_settings_override_defaults_and_removed_keys_fall_back() -> None:
    conf = effective_configuration(hco(bandwidthPerMigration="64Mi", completionTimeoutPerGiB=800))
    src = "HyperConverged/openshift-cnv/kubevirt-hyperconverged"
    assert conf.bandwidth_per_migration == 64 * 2**20
    assert conf.completion_timeout_per_gib == 800
    assert conf.sources["bandwidthPerMigration"] == src
    assert conf.progress_timeout == 150 and conf.is_default("progressTimeout")


def test_policy_overrides_only_what_it_sets() -> None:
    p = policy("fast", vmi={}, bandwidthPerMigration="1Gi", allowAutoConverge=True)
    conf = effective_configuration(hco(bandwidthPerMigration="64Mi", progressTimeout=300), p)
    assert conf.bandwidth_per_migration == 2**30
    assert conf.sources["bandwidthPerMigration"] == "MigrationPolicy/fast"
    assert conf.allow_auto_converge is True
    assert conf.progress_timeout == 300  # cluster-only setting untouched


def test_policy_cannot_change_cluster_only_settings() -> None:
    with pytest.raises(ValueError, match="parallelMigrationsPerCluster"):
        policy("p", parallelMigrationsPerCluster=1)


@pytest.mark.parametrize(
    ("cluster", "policy_settings", "awd", "source"),
    [
        ({}, None, False, DEFAULT),
        (
            {"allowPostCopy": True},
            None,
            True,
            "HyperConverged/openshift-cnv/kubevirt-hyperconverged (follows allowPostCopy)",
        ),
        (
            {"allowPostCopy": True, "allowWorkloadDisruption": False},
            None,
            False,
            "HyperConverged/openshift-cnv/kubevirt-hyperconverged",
        ),
        (
            {"allowWorkloadDisruption": True},
            None,
            True,
            "HyperConverged/openshift-cnv/kubevirt-hyperconverged",
        ),
        # a policy's allowPostCopy carries allowWorkloadDisruption with it, over the cluster's
        (
            {"allowWorkloadDisruption": True},
            {"allowPostCopy": False},
            False,
            "MigrationPolicy/p (follows allowPostCopy)",
        ),
        ({}, {"allowPostCopy": True}, True, "MigrationPolicy/p (follows allowPostCopy)"),
        ({}, {"allowPostCopy": True, "allowWorkloadDisruption": False}, False, "MigrationPolicy/p"),
        # a policy that says nothing about post-copy leaves the cluster's rule in place
        (
            {"allowPostCopy": True},
            {"bandwidthPerMigration": "1Gi"},
            True,
            "HyperConverged/openshift-cnv/kubevirt-hyperconverged (follows allowPostCopy)",
        ),
    ],
)
def test_allow_workload_disruption_follows_allow_post_copy_when_unset(
    cluster: dict[str, Any], policy_settings: dict[str, Any] | None, awd: bool, source: str
) -> None:
    p = policy("p", **policy_settings) if policy_settings is not None else None
    conf = effective_configuration(hco(**cluster), p)
    assert conf.allow_workload_disruption is awd
    assert conf.sources["allowWorkloadDisruption"] == source


def test_hyperconverged_wins_over_kubevirt_and_kubevirt_is_used_alone() -> None:
    kv = KubeVirt.model_validate(
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "KubeVirt",
            "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
            "spec": {"configuration": {"migrations": {"progressTimeout": 42, "disableTLS": False}}},
        }
    )
    only_kv = effective_configuration(cluster_config([], [kv]))
    assert only_kv.progress_timeout == 42
    assert only_kv.sources["progressTimeout"] == "KubeVirt/kubevirt/kubevirt"
    hco_obj = HyperConverged.model_validate(
        {
            "apiVersion": "hco.kubevirt.io/v1beta1",
            "kind": "HyperConverged",
            "metadata": {"name": "h", "namespace": "openshift-cnv"},
            "spec": {},
        }
    )
    both = effective_configuration(cluster_config([hco_obj], [kv]))
    assert both.progress_timeout == 150 and both.is_default("progressTimeout")


label_maps = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(["", "1", "2"]), max_size=3
)


@settings(max_examples=200, deadline=None)
@given(
    selectors=st.lists(st.tuples(label_maps, label_maps), min_size=0, max_size=8),
    namespaces=st.lists(label_maps, min_size=1, max_size=4),
    vmis=st.lists(st.tuples(st.integers(0, 3), label_maps), min_size=1, max_size=12),
    precedence=st.sampled_from(list(Precedence)),
)
def test_index_never_disagrees_with_the_rule(
    selectors: list[tuple[dict[str, str], dict[str, str]]],
    namespaces: list[dict[str, str]],
    vmis: list[tuple[int, dict[str, str]]],
    precedence: Precedence,
) -> None:
    policies = [policy(f"p{i}", ns, vmi) for i, (ns, vmi) in enumerate(selectors)]
    index = PolicyIndex(policies, precedence)
    for ns_index, labels in vmis:
        ns_labels = namespaces[ns_index % len(namespaces)]
        got = index.resolve(f"ns{ns_index % len(namespaces)}", ns_labels, labels)
        want = resolve(policies, ns_labels, labels, precedence)
        assert [m.name for m in got.ranked] == [m.name for m in want.ranked]
        assert got.other_rule_winner == want.other_rule_winner


def test_max_downtime_comes_from_the_cluster_then_the_winning_policy_and_reaches_qemu() -> None:
    cluster = hco(maxDowntimeMs=800)
    assert effective_configuration(cluster).max_downtime_ms == 800
    strict = policy("strict", vmi={"app": "db"}, maxDowntimeMs=50)
    conf = effective_configuration(cluster, strict)
    assert conf.max_downtime_ms == 50
    assert conf.sources["maxDowntimeMs"] == "MigrationPolicy/strict"
    assert params_for(conf).downtime_limit_ms == 50
    assert MigrationConfiguration.from_dict(conf.as_dict()).max_downtime_ms == 50
    unset = effective_configuration(ClusterConfig())
    assert unset.max_downtime_ms == 300 and unset.is_default("maxDowntimeMs")


@pytest.mark.parametrize("value", [0, 2_000_001, "300"])
def test_max_downtime_outside_kubevirts_bounds_is_refused(value: object) -> None:
    with pytest.raises(ValidationError):
        policy("p", vmi={"a": "b"}, maxDowntimeMs=value)
