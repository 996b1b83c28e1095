"""Advice on a live-migration configuration: settings that will hurt, policies that do nothing.

Every finding has a stable code (documented in the README); input problems found while loading
are reported under LM001–LM004 by the CLI, advice under LM1xx here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from livemig.api.loading import Skipped
from livemig.api.models import HyperConverged, MigrationPolicy, MigrationSettings, Resource
from livemig.api.quantity import human_bytes
from livemig.errors import Problem
from livemig.inventory import Inventory, Workload
from livemig.policy import (
    DEFAULT,
    DefaultsProfile,
    Precedence,
    Resolution,
    effective_configuration,
)

GIB = 2**30


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    code: str
    object: str | None
    field: str | None
    message: str
    file: str | None = None
    line: int | None = None

    def as_dict(self) -> dict[str, str | int | None]:
        return {
            "severity": self.severity.value,
            "code": self.code,
            "object": self.object,
            "field": self.field,
            "message": self.message,
            "file": self.file,
            "line": self.line,
        }


#: code → (severity, one-line title). The README's table is checked against this in the tests.
CODES: dict[str, tuple[Severity, str]] = {
    "LM001": (Severity.ERROR, "YAML syntax error or duplicate key"),
    "LM002": (Severity.ERROR, "object does not validate (unknown field, wrong type, bad value)"),
    "LM003": (Severity.ERROR, "the same object is defined twice"),
    "LM004": (Severity.ERROR, "a path cannot be read"),
    "LM101": (Severity.WARNING, "allowPostCopy is true but allowWorkloadDisruption is false"),
    "LM102": (Severity.ERROR, "completion timeout shorter than the bare transfer time"),
    "LM103": (Severity.WARNING, "completionTimeoutPerGiB is 0: no completion timeout"),
    "LM104": (Severity.WARNING, "progressTimeout is 0: stalled migrations are never cancelled"),
    "LM105": (Severity.ERROR, "a parallel-migration limit is 0: no migration can start"),
    "LM106": (Severity.WARNING, "per-node limit above the cluster limit"),
    "LM107": (Severity.WARNING, "policy can never win: another has the same selectors"),
    "LM108": (Severity.WARNING, "policy matches no VMI in the input"),
    "LM109": (Severity.INFO, "policy applies to VMIs but always loses to another"),
    "LM110": (Severity.WARNING, "both a HyperConverged and a KubeVirt object"),
    "LM111": (Severity.WARNING, "post-copy enabled cluster-wide"),
    "LM112": (Severity.ERROR, "more than one cluster configuration object"),
    "LM113": (Severity.INFO, "VMI's namespace is not in the input"),
    "LM114": (Severity.INFO, "documented and KubeVirt precedence pick different policies"),
    "LM115": (Severity.INFO, "objects of kinds livemig does not use were skipped"),
    "LM116": (Severity.INFO, "VMI memory size unknown"),
    "LM117": (Severity.INFO, "a policy's experimental (alpha) settings are kept but ignored"),
    "LM118": (
        Severity.INFO,
        "completionTimeoutPerGiB 150 on HyperConverged 1.20+: rewritten to 20",
    ),
}


def finding(
    code: str, obj: str | None, field: str | None, message: str, severity: Severity | None = None
) -> Finding:
    return Finding(severity or CODES[code][0], code, obj, field, message)


def from_problem(problem: Problem) -> Finding:
    return Finding(
        CODES[problem.code][0],
        problem.code,
        problem.object,
        problem.field,
        problem.message,
        problem.file,
        problem.line,
    )


def _names(workloads: Sequence[Workload], limit: int = 3) -> str:
    shown = ", ".join(w.ref.split("/", 1)[1] for w in workloads[:limit])
    more = len(workloads) - limit
    return shown + (f" and {more} more" if more > 0 else "")


def lint(
    inventory: Inventory,
    skipped: Sequence[Skipped] = (),
    precedence: Precedence = Precedence.DOCUMENTED,
) -> list[Finding]:
    """Every piece of advice for the input, in a stable order (severity, code, object)."""
    found: list[Finding] = []
    found += _cluster_objects(inventory)
    found += _settings_advice(inventory)
    resolved = inventory.resolve_all(inventory.workloads, precedence)
    found += _policy_advice(inventory, resolved)
    found += _timeout_advice(inventory, resolved)
    found += _input_advice(inventory, resolved, skipped)
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    return sorted(found, key=lambda f: (order[f.severity], f.code, f.object or ""))


def _cluster_objects(inv: Inventory) -> Iterable[Finding]:
    if inv.hyperconverged and inv.kubevirt:
        yield finding(
            "LM110",
            inv.kubevirt[0].ref,
            "spec.configuration.migrations",
            f"{inv.hyperconverged[0].ref} manages this KubeVirt object and overwrites its "
            "settings; livemig uses the HyperConverged settings. Edit only the HyperConverged.",
        )
    for objs in (inv.hyperconverged, inv.kubevirt):
        if len(objs) > 1:
            yield finding(
                "LM112",
                objs[1].ref,
                None,
                f"{len(objs)} {objs[0].KIND} objects; a cluster has one. livemig uses "
                f"{objs[0].ref} and ignores the others: remove the extra ones.",
            )


def _cluster_settings(inv: Inventory) -> tuple[Resource, str, MigrationSettings] | None:
    """(object, field prefix, settings) of the object the cluster settings come from."""
    if inv.hyperconverged:
        hco = inv.hyperconverged[0]
        if hco.migration_settings is not None:
            return hco, hco.settings_path, hco.migration_settings
    elif inv.kubevirt:
        kv = inv.kubevirt[0]
        if kv.spec.configuration and kv.spec.configuration.migrations:
            return kv, "spec.configuration.migrations", kv.spec.configuration.migrations
    return None


def _settings_advice(inv: Inventory) -> Iterable[Finding]:
    if (found := _cluster_settings(inv)) is not None:
        obj, prefix, s = found
        if (
            isinstance(obj, HyperConverged)
            and s.completion_timeout_per_gib == 150
            and (
                (obj.operator_version or (0, 0)) >= (1, 20)
                or inv.defaults is DefaultsProfile.HCO_1_20
            )
        ):
            yield finding(
                "LM118",
                obj.ref,
                f"{prefix}.completionTimeoutPerGiB",
                "is exactly 150, the old default: the HyperConverged operator since release 1.20 "
                "rewrites 150 to 20 on upgrade. If you mean 150, expect it to become 20; if you "
                "mean the default, remove the key.",
            )
        if s.allow_post_copy and s.allow_workload_disruption is False:
            yield _postcopy_never(obj, prefix)
        if s.completion_timeout_per_gib == 0:
            yield finding(
                "LM103",
                obj.ref,
                f"{prefix}.completionTimeoutPerGiB",
                "0 disables the completion timeout: a migration that never converges "
                "runs (and holds a parallel slot) until progressTimeout cancels it. "
                "Remove the key to restore the default of 150.",
            )
        if s.progress_timeout == 0:
            yield finding(
                "LM104",
                obj.ref,
                f"{prefix}.progressTimeout",
                "0 disables the progress timeout: a stalled migration is never "
                "cancelled and blocks its slot and the drain. Remove the key to "
                "restore the default of 150.",
            )
        for fld, value in (
            ("parallelMigrationsPerCluster", s.parallel_migrations_per_cluster),
            ("parallelOutboundMigrationsPerNode", s.parallel_outbound_migrations_per_node),
        ):
            if value == 0:
                yield finding(
                    "LM105",
                    obj.ref,
                    f"{prefix}.{fld}",
                    "0 admits no migration at all: every node drain will stall. "
                    "Set at least 1, or remove the key for the default.",
                )
        effective = effective_configuration(inv.cluster)
        if (
            effective.parallel_outbound_migrations_per_node
            > effective.parallel_migrations_per_cluster
        ):
            yield finding(
                "LM106",
                obj.ref,
                f"{prefix}.parallelOutboundMigrationsPerNode",
                f"{effective.parallel_outbound_migrations_per_node} per node is more than "
                f"{effective.parallel_migrations_per_cluster} for the whole cluster, so the "
                "cluster limit is what applies. Lower it to at most the cluster limit.",
            )
        if s.allow_post_copy:
            yield finding(
                "LM111",
                obj.ref,
                f"{prefix}.allowPostCopy",
                "post-copy is allowed for every VM. A post-copy migration cannot be cancelled "
                "and a network failure during it loses the VM; the document advises against it "
                "for critical data or unstable networks. Prefer a MigrationPolicy that allows "
                "post-copy only for the heavy workloads that need it.",
            )
    for policy in inv.policies:
        if policy.spec.allow_post_copy and policy.spec.allow_workload_disruption is False:
            yield _postcopy_never(policy, "spec")
        if policy.spec.completion_timeout_per_gib == 0:
            yield finding(
                "LM103",
                policy.ref,
                "spec.completionTimeoutPerGiB",
                "0 disables the completion timeout for the VMIs this policy wins: "
                "a migration that never converges runs until progressTimeout "
                "cancels it.",
            )


def _postcopy_never(obj: Resource, prefix: str) -> Finding:
    return finding(
        "LM101",
        obj.ref,
        f"{prefix}.allowWorkloadDisruption",
        "allowPostCopy is true but allowWorkloadDisruption is false, so the switch to post-copy "
        "can never happen (migrations are cancelled at the completion timeout instead). Remove "
        "allowWorkloadDisruption (it then follows allowPostCopy) or set it to true.",
    )


def _policy_advice(
    inv: Inventory, resolved: Sequence[tuple[Workload, Resolution]]
) -> Iterable[Finding]:
    by_selectors: dict[tuple[object, ...], list[MigrationPolicy]] = defaultdict(list)
    for p in inv.policies:
        sel = p.spec.selectors
        key = (
            tuple(sorted(sel.namespace_selector.items())),
            tuple(sorted(sel.virtual_machine_instance_selector.items())),
        )
        by_selectors[key].append(p)
    for p in inv.policies:
        if p.spec.experimental:
            yield finding(
                "LM117",
                p.ref,
                "spec.experimental",
                f"KubeVirt's alpha settings ({', '.join(sorted(p.spec.experimental))}) are kept "
                "as written but livemig does not act on them; what they change is not shown.",
            )
    shadowed: set[str] = set()
    for group in by_selectors.values():
        winner, *losers = sorted(group, key=lambda p: p.name)
        for loser in losers:
            shadowed.add(loser.name)
            yield finding(
                "LM107",
                loser.ref,
                "spec.selectors",
                f"MigrationPolicy/{winner.name} has exactly the same selectors and a lower name, "
                "so it wins every tie under both precedence rules; this policy never applies. "
                "Merge the two or give this one a more specific selector.",
            )
    if not inv.workloads:
        return
    applies: dict[str, int] = defaultdict(int)
    wins: dict[str, int] = defaultdict(int)
    for _, res in resolved:
        for m in res.ranked:
            applies[m.name] += 1
        if res.winner:
            wins[res.winner.name] += 1
    for p in inv.policies:
        if p.name in shadowed:
            continue
        if applies[p.name] == 0:
            sel = p.spec.selectors
            yield finding(
                "LM108",
                p.ref,
                "spec.selectors",
                "matches no VMI or VM in the input. Check the label keys and values (values are "
                f"exact strings): namespaceSelector {dict(sel.namespace_selector)}, "
                f"virtualMachineInstanceSelector {dict(sel.virtual_machine_instance_selector)}.",
            )
        elif wins[p.name] == 0:
            yield finding(
                "LM109",
                p.ref,
                "spec.selectors",
                f"applies to {applies[p.name]} VMI(s) but a higher-ranked policy wins for every "
                "one of them; run `livemig explain` on them to see which.",
            )


def _timeout_advice(
    inv: Inventory, resolved: Sequence[tuple[Workload, Resolution]]
) -> Iterable[Finding]:
    """LM102: completionTimeoutPerGiB × bandwidth < 1 GiB means even an idle VM cannot finish."""
    hopeless: dict[str, list[Workload]] = defaultdict(list)
    configs = {}
    for workload, res in resolved:
        conf = inv.configuration(res)
        if conf.bandwidth_per_migration == 0 or conf.completion_timeout_per_gib == 0:
            continue
        if conf.completion_timeout_per_gib * conf.bandwidth_per_migration < GIB:
            # Blame whoever set the more recent of the two values.
            src = conf.sources["completionTimeoutPerGiB"]
            if src == DEFAULT:
                src = conf.sources["bandwidthPerMigration"]
            hopeless[src].append(workload)
            configs[src] = conf
    for src, workloads in hopeless.items():
        conf = configs[src]
        bw = conf.bandwidth_per_migration
        per_gib = GIB / bw
        if conf.allow_workload_disruption:
            severity, outcome = (
                Severity.WARNING,
                (
                    "so every migration of them is forced into "
                    + ("post-copy" if conf.allow_post_copy else "pausing the guest")
                ),
            )
        else:
            severity, outcome = Severity.ERROR, "so every migration of them is cancelled"
        yield finding(
            "LM102",
            src if src != DEFAULT else None,
            "completionTimeoutPerGiB",
            f"{conf.completion_timeout_per_gib} s per GiB is less than the {per_gib:.0f} s it "
            f"takes just to send 1 GiB at {human_bytes(bw)}/s, {outcome} even when idle. "
            f"Affects {len(workloads)} VMI(s): {_names(workloads)}. Raise "
            f"completionTimeoutPerGiB above {per_gib:.0f} or raise bandwidthPerMigration.",
            severity,
        )


def _input_advice(
    inv: Inventory, resolved: Sequence[tuple[Workload, Resolution]], skipped: Sequence[Skipped]
) -> Iterable[Finding]:
    uses_ns = any(p.spec.selectors.namespace_selector for p in inv.policies)
    missing_ns: dict[str, list[Workload]] = defaultdict(list)
    unknown_memory: list[Workload] = []
    disagree: list[tuple[Workload, Resolution]] = []
    for w, res in resolved:
        if uses_ns and w.namespace not in inv.namespaces:
            missing_ns[w.namespace].append(w)
        if w.memory_bytes is None:
            unknown_memory.append(w)
        if res.rules_disagree:
            disagree.append((w, res))
    for ns, workloads in sorted(missing_ns.items()):
        yield finding(
            "LM113",
            f"Namespace/{ns}",
            "metadata.labels",
            f"not in the input, so policies with a namespaceSelector cannot match its "
            f"{len(workloads)} VMI(s) ({_names(workloads)}). Add it: oc get ns {ns} -o yaml.",
        )
    if unknown_memory:
        notes = "".join(f" {w.ref}: {w.memory_note}." for w in unknown_memory if w.memory_note)
        yield finding(
            "LM116",
            unknown_memory[0].ref,
            "spec.domain.memory.guest",
            f"{len(unknown_memory)} VMI(s) give neither domain.memory.guest, a memory request "
            f"nor an instancetype in the input ({_names(unknown_memory)}); their completion "
            f"timeout cannot be computed.{notes}",
        )
    for w, res in disagree:
        assert res.winner is not None
        yield finding(
            "LM114",
            w.ref,
            "metadata.labels",
            f"the {res.precedence.value} rule picks MigrationPolicy/{res.winner.name} "
            f"({res.reason}) but the other rule picks MigrationPolicy/{res.other_rule_winner}. "
            "Real KubeVirt uses its own rule (--policy-precedence kubevirt); make one policy "
            "more specific to remove the ambiguity.",
        )
    if skipped:
        kinds = sorted({s.kind for s in skipped})
        yield finding(
            "LM115",
            None,
            None,
            f"{len(skipped)} object(s) of kinds livemig does not use were skipped: "
            f"{', '.join(kinds)}.",
        )
