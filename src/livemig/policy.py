"""Which MigrationPolicy applies to a VMI, and the effective migration configuration (SPEC §2–3).

Pure functions over data. ``PolicyIndex`` only caches calls to them for large inputs; the rules
live in ``match_policy``, ``ranking_key`` and ``effective_configuration`` and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from livemig.api.models import (
    EvictionStrategy,
    HyperConverged,
    KubeVirt,
    MigrationPolicy,
    MigrationPolicySpec,
    MigrationSettings,
)

DEFAULT = "default"


class Precedence(StrEnum):
    """How ties between equally-scored policies are broken."""

    DOCUMENTED = "documented"  # the document: matched label keys in order, then name
    KUBEVIRT = "kubevirt"  # upstream code: more VMI-label matches, then name

    def describe(self) -> str:
        if self is Precedence.DOCUMENTED:
            return "documented rule (score, then sorted matched label keys, then name)"
        return "KubeVirt rule (score, then VMI-label matches, then name)"


@dataclass(frozen=True, slots=True)
class PolicyMatch:
    """A policy that applies to a VMI. Every selector entry matched, so the matched keys are
    exactly the policy's selector keys."""

    policy: MigrationPolicy

    @property
    def name(self) -> str:
        return self.policy.metadata.name

    @property
    def namespace_keys(self) -> tuple[str, ...]:
        return tuple(self.policy.spec.selectors.namespace_selector)

    @property
    def vmi_keys(self) -> tuple[str, ...]:
        return tuple(self.policy.spec.selectors.virtual_machine_instance_selector)

    @property
    def matched_keys(self) -> tuple[str, ...]:
        return self.policy.spec.selectors.all_keys

    @property
    def score(self) -> int:
        return len(self.policy.spec.selectors.all_keys)


def _selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    # Every entry must be present with the same value; "" matches only a present, empty label.
    return selector.items() <= labels.items()


def match_policy(
    policy: MigrationPolicy, namespace_labels: Mapping[str, str], vmi_labels: Mapping[str, str]
) -> PolicyMatch | None:
    """The match if every selector entry is satisfied, else None (SPEC §3)."""
    sel = policy.spec.selectors
    if not _selector_matches(sel.namespace_selector, namespace_labels):
        return None
    if not _selector_matches(sel.virtual_machine_instance_selector, vmi_labels):
        return None
    return PolicyMatch(policy)


def ranking_key(match: PolicyMatch, precedence: Precedence) -> tuple[object, ...]:
    """Sort key: the smallest key wins."""
    if precedence is Precedence.DOCUMENTED:
        return (-match.score, match.matched_keys, match.name)
    vmi_matches = len(match.policy.spec.selectors.virtual_machine_instance_selector)
    return (-match.score, -vmi_matches, match.name)


def rank(matches: Sequence[PolicyMatch], precedence: Precedence) -> tuple[PolicyMatch, ...]:
    return tuple(sorted(matches, key=lambda m: ranking_key(m, precedence)))


def decided_by(winner: PolicyMatch, runner_up: PolicyMatch | None, precedence: Precedence) -> str:
    """Which step of the rule put ``winner`` ahead of ``runner_up``, in words."""
    if runner_up is None:
        return "only applicable policy"
    if winner.score != runner_up.score:
        return f"higher score ({winner.score} > {runner_up.score})"
    if precedence is Precedence.DOCUMENTED:
        if winner.matched_keys != runner_up.matched_keys:
            return (
                f"tie on score {winner.score}; matched label keys "
                f"[{', '.join(winner.matched_keys)}] sort before "
                f"[{', '.join(runner_up.matched_keys)}]"
            )
    elif len(winner.vmi_keys) != len(runner_up.vmi_keys):
        return (
            f"tie on score {winner.score}; more VMI-label matches "
            f"({len(winner.vmi_keys)} > {len(runner_up.vmi_keys)})"
        )
    return f"tie on score {winner.score}; policy name {winner.name!r} sorts first"


@dataclass(frozen=True, slots=True)
class Resolution:
    """Every applicable policy, ranked best first, and how the other rule would choose."""

    ranked: tuple[PolicyMatch, ...]
    precedence: Precedence
    other_rule_winner: str | None  # set only when the other rule picks a different policy

    @property
    def winner(self) -> PolicyMatch | None:
        return self.ranked[0] if self.ranked else None

    @property
    def runner_up(self) -> PolicyMatch | None:
        return self.ranked[1] if len(self.ranked) > 1 else None

    @property
    def reason(self) -> str:
        if self.winner is None:
            return "no policy applies"
        return decided_by(self.winner, self.runner_up, self.precedence)

    @property
    def rules_disagree(self) -> bool:
        return self.other_rule_winner is not None


def resolve(
    policies: Sequence[MigrationPolicy],
    namespace_labels: Mapping[str, str],
    vmi_labels: Mapping[str, str],
    precedence: Precedence = Precedence.DOCUMENTED,
) -> Resolution:
    """Rank the policies that apply to one VMI."""
    matches = [
        m for p in policies if (m := match_policy(p, namespace_labels, vmi_labels)) is not None
    ]
    return _resolution(matches, precedence)


def _resolution(matches: Sequence[PolicyMatch], precedence: Precedence) -> Resolution:
    ranked = rank(matches, precedence)
    other = Precedence.KUBEVIRT if precedence is Precedence.DOCUMENTED else Precedence.DOCUMENTED
    other_winner = min(matches, key=lambda m: ranking_key(m, other)) if matches else None
    differs = other_winner is not None and other_winner.name != ranked[0].name
    return Resolution(ranked, precedence, other_winner.name if differs and other_winner else None)


class PolicyIndex:
    """Resolves many VMIs quickly; every answer still comes from ``resolve``.

    Per namespace, the policies whose namespaceSelector matches become its candidate set.
    Namespaces with the same candidate set share one, and within a set only the VMI label keys
    some candidate selects on can change the outcome, so each distinct combination of those
    values is resolved once. Candidates are further narrowed by the first entry of their
    virtualMachineInstanceSelector, so ``resolve`` sees a short list.
    """

    def __init__(self, policies: Sequence[MigrationPolicy], precedence: Precedence) -> None:
        self.policies = tuple(policies)
        self.precedence = precedence
        self._by_namespace: dict[str, _CandidateSet] = {}
        # Namespaces agreeing on every label key some namespaceSelector uses share candidates.
        self._namespace_keys = tuple(
            sorted({k for p in policies for k in p.spec.selectors.namespace_selector})
        )
        self._sets: dict[tuple[str | None, ...], _CandidateSet] = {}

    def _candidates(self, namespace: str, namespace_labels: Mapping[str, str]) -> _CandidateSet:
        found = self._by_namespace.get(namespace)
        if found is None:
            key = tuple(namespace_labels.get(k) for k in self._namespace_keys)
            found = self._sets.get(key)
            if found is None:
                found = self._sets[key] = _CandidateSet(
                    [
                        p
                        for p in self.policies
                        if _selector_matches(p.spec.selectors.namespace_selector, namespace_labels)
                    ]
                )
            self._by_namespace[namespace] = found
        return found

    def resolve(
        self, namespace: str, namespace_labels: Mapping[str, str], vmi_labels: Mapping[str, str]
    ) -> Resolution:
        cands = self._candidates(namespace, namespace_labels)
        key = tuple(vmi_labels.get(k) for k in cands.keys)
        found = cands.resolved.get(key)
        if found is None:
            found = cands.resolved[key] = resolve(
                cands.plausible(vmi_labels), namespace_labels, vmi_labels, self.precedence
            )
        return found


class _CandidateSet:
    def __init__(self, policies: Sequence[MigrationPolicy]) -> None:
        self.always: list[MigrationPolicy] = []
        self.by_entry: dict[tuple[str, str], list[MigrationPolicy]] = {}
        keys: set[str] = set()
        for p in policies:
            vmi_selector = p.spec.selectors.virtual_machine_instance_selector
            keys.update(vmi_selector)
            if vmi_selector:
                self.by_entry.setdefault(next(iter(vmi_selector.items())), []).append(p)
            else:
                self.always.append(p)
        self.keys = tuple(sorted(keys))
        self.resolved: dict[tuple[str | None, ...], Resolution] = {}

    def plausible(self, vmi_labels: Mapping[str, str]) -> list[MigrationPolicy]:
        out = list(self.always)
        for entry in vmi_labels.items():
            out += self.by_entry.get(entry, ())
        return out


# --- effective configuration -----------------------------------------------------------------

#: The ten settings of SPEC §2, by their YAML names, with KubeVirt's defaults.
DEFAULTS: dict[str, int | bool | None] = {
    "bandwidthPerMigration": 0,
    "completionTimeoutPerGiB": 150,
    "parallelMigrationsPerCluster": 5,
    "parallelOutboundMigrationsPerNode": 2,
    "progressTimeout": 150,
    "allowPostCopy": False,
    "allowAutoConverge": False,
    "allowWorkloadDisruption": None,  # follows allowPostCopy
    "network": None,
    "maxDowntimeMs": 300,  # QEMU's own downtime-limit
}

#: What the HyperConverged operator's release 1.20 changed.
HCO_1_20_CHANGES: dict[str, int | bool | None] = {
    "completionTimeoutPerGiB": 20,
    "parallelOutboundMigrationsPerNode": 1,
}


class DefaultsProfile(StrEnum):
    """Whose defaults fill the settings nobody set. The document and KubeVirt agree; the
    HyperConverged operator's release 1.20 (2026) lowered two (and rewrites an explicit 150 to
    20 on upgrade)."""

    DOCUMENT = "document"
    KUBEVIRT = "kubevirt"
    HCO_1_20 = "hco-1.20"

    @property
    def defaults(self) -> dict[str, int | bool | None]:
        if self is DefaultsProfile.HCO_1_20:
            return {
                **DEFAULTS,
                "completionTimeoutPerGiB": 20,
                "parallelOutboundMigrationsPerNode": 1,
            }
        return dict(DEFAULTS)

    def describe(self) -> str:
        changed = {k: v for k, v in self.defaults.items() if DEFAULTS[k] != v}
        if not changed:
            who = "the OpenShift document's" if self is DefaultsProfile.DOCUMENT else "KubeVirt's"
            return (
                f"{self.value} ({who}: completionTimeoutPerGiB 150, "
                "parallelOutboundMigrationsPerNode 2)"
            )
        shown = ", ".join(f"{k} {v}" for k, v in changed.items())
        return f"{self.value} (the HyperConverged operator's since release 1.20: {shown})"


#: Settings a MigrationPolicy may override; the rest are cluster-only.
POLICY_SETTINGS = (
    "allowAutoConverge",
    "bandwidthPerMigration",
    "completionTimeoutPerGiB",
    "allowPostCopy",
    "allowWorkloadDisruption",
    "maxDowntimeMs",
)


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """The cluster's own live-migration settings and the object they came from."""

    settings: MigrationSettings | None = None
    source: str | None = None  # "HyperConverged/ns/name", "KubeVirt/ns/name" or None
    eviction_strategy: EvictionStrategy | None = None
    defaults: DefaultsProfile = DefaultsProfile.DOCUMENT


def cluster_config(
    hyperconverged: Sequence[HyperConverged],
    kubevirt: Sequence[KubeVirt],
    defaults: DefaultsProfile = DefaultsProfile.DOCUMENT,
) -> ClusterConfig:
    """HyperConverged wins (its operator overwrites the KubeVirt object), else KubeVirt."""
    if hyperconverged:
        hco = hyperconverged[0]
        return ClusterConfig(hco.migration_settings, hco.ref, hco.eviction_strategy, defaults)
    if kubevirt:
        kv = kubevirt[0]
        conf = kv.spec.configuration
        return ClusterConfig(
            conf.migrations if conf else None,
            kv.ref,
            conf.eviction_strategy if conf else None,
            defaults,
        )
    return ClusterConfig(defaults=defaults)


def _set_fields(
    settings: MigrationSettings | MigrationPolicySpec | None, names: Sequence[str]
) -> dict[str, object]:
    """The settings the user wrote, by YAML name, as plain values (bandwidth in bytes/s)."""
    if settings is None:
        return {}
    dumped = settings.model_dump(by_alias=True, exclude_unset=True)
    out: dict[str, object] = {}
    for name in names:
        if name in dumped and dumped[name] is not None:
            value = dumped[name]
            if name == "bandwidthPerMigration":
                q = settings.bandwidth_per_migration
                assert q is not None
                value = q.to_bytes()
            out[name] = value
    return out


@dataclass(frozen=True, slots=True)
class MigrationConfiguration:
    """The settings one migration runs with, and where each value came from."""

    bandwidth_per_migration: int
    completion_timeout_per_gib: int
    parallel_migrations_per_cluster: int
    parallel_outbound_migrations_per_node: int
    progress_timeout: int
    allow_post_copy: bool
    allow_auto_converge: bool
    allow_workload_disruption: bool
    network: str | None
    max_downtime_ms: int = 300
    sources: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int | bool | str | None]:
        """Field → value by YAML names, as recorded in ``migrationState.migrationConfiguration``."""
        return {
            "bandwidthPerMigration": self.bandwidth_per_migration,
            "completionTimeoutPerGiB": self.completion_timeout_per_gib,
            "parallelMigrationsPerCluster": self.parallel_migrations_per_cluster,
            "parallelOutboundMigrationsPerNode": self.parallel_outbound_migrations_per_node,
            "progressTimeout": self.progress_timeout,
            "allowPostCopy": self.allow_post_copy,
            "allowAutoConverge": self.allow_auto_converge,
            "allowWorkloadDisruption": self.allow_workload_disruption,
            "network": self.network,
            "maxDowntimeMs": self.max_downtime_ms,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> MigrationConfiguration:
        """Back from ``as_dict`` (as recorded in a migration's status)."""
        return cls(
            bandwidth_per_migration=int(values["bandwidthPerMigration"]),
            completion_timeout_per_gib=int(values["completionTimeoutPerGiB"]),
            parallel_migrations_per_cluster=int(values["parallelMigrationsPerCluster"]),
            parallel_outbound_migrations_per_node=int(values["parallelOutboundMigrationsPerNode"]),
            progress_timeout=int(values["progressTimeout"]),
            allow_post_copy=bool(values["allowPostCopy"]),
            allow_auto_converge=bool(values["allowAutoConverge"]),
            allow_workload_disruption=bool(values["allowWorkloadDisruption"]),
            network=values.get("network"),
            # Migrations recorded before maxDowntimeMs existed ran with QEMU's 300 ms.
            max_downtime_ms=int(values.get("maxDowntimeMs", 300)),
        )

    def is_default(self, name: str) -> bool:
        return self.sources.get(name) == DEFAULT


def effective_configuration(
    cluster: ClusterConfig, policy: MigrationPolicy | None = None
) -> MigrationConfiguration:
    """Defaults (of the cluster's profile), then the cluster object's settings, then every
    field the policy sets."""
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    for name, default in cluster.defaults.defaults.items():
        values[name], sources[name] = default, DEFAULT
    for name, value in _set_fields(cluster.settings, list(DEFAULTS)).items():
        assert cluster.source is not None
        values[name], sources[name] = value, cluster.source
    policy_set = _set_fields(policy.spec, POLICY_SETTINGS) if policy else {}
    for name, value in policy_set.items():
        assert policy is not None
        values[name], sources[name] = value, f"MigrationPolicy/{policy.name}"

    # allowWorkloadDisruption, when nobody at its level set it, follows allowPostCopy.
    if (
        policy is not None
        and "allowPostCopy" in policy_set
        and ("allowWorkloadDisruption" not in policy_set)
    ):
        values["allowWorkloadDisruption"] = policy_set["allowPostCopy"]
        sources["allowWorkloadDisruption"] = (
            f"MigrationPolicy/{policy.name} (follows allowPostCopy)"
        )
    elif values["allowWorkloadDisruption"] is None:
        values["allowWorkloadDisruption"] = values["allowPostCopy"]
        if sources["allowPostCopy"] != DEFAULT:
            sources["allowWorkloadDisruption"] = (
                f"{sources['allowPostCopy']} (follows allowPostCopy)"
            )

    return MigrationConfiguration(
        bandwidth_per_migration=_as_int(values["bandwidthPerMigration"]),
        completion_timeout_per_gib=_as_int(values["completionTimeoutPerGiB"]),
        parallel_migrations_per_cluster=_as_int(values["parallelMigrationsPerCluster"]),
        parallel_outbound_migrations_per_node=_as_int(values["parallelOutboundMigrationsPerNode"]),
        progress_timeout=_as_int(values["progressTimeout"]),
        allow_post_copy=bool(values["allowPostCopy"]),
        allow_auto_converge=bool(values["allowAutoConverge"]),
        allow_workload_disruption=bool(values["allowWorkloadDisruption"]),
        network=str(values["network"]) if values["network"] is not None else None,
        max_downtime_ms=_as_int(values["maxDowntimeMs"]),
        sources=sources,
    )


def _as_int(value: object) -> int:
    assert isinstance(value, int) and not isinstance(value, bool)
    return value
