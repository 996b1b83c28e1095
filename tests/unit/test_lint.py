"""Each piece of lint advice fires on the configuration it is about, and only there."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from livemig.api.loading import LoadResult
from livemig.api.models import to_dict
from livemig.inventory import Inventory
from livemig.lint import Finding, Severity, lint
from livemig.policy import Precedence

Load = Callable[[str], LoadResult]

HCO = """
apiVersion: hco.kubevirt.io/v1beta1
kind: HyperConverged
metadata: {{name: kubevirt-hyperconverged, namespace: openshift-cnv}}
spec:
  liveMigrationConfig: {settings}
"""
HCO_REF = "HyperConverged/openshift-cnv/kubevirt-hyperconverged"


def vmi(name: str, labels: str = "{}", ns: str = "apps", memory: str = "4Gi") -> str:
    return f"""
---
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {{name: {name}, namespace: {ns}, labels: {labels}}}
spec:
  domain: {{memory: {{guest: {memory}}}}}
"""


def mp(name: str, spec: str) -> str:
    return f"""
---
apiVersion: migrations.kubevirt.io/v1alpha1
kind: MigrationPolicy
metadata: {{name: {name}}}
spec: {spec}
"""


NS = """
---
apiVersion: v1
kind: Namespace
metadata: {name: apps, labels: {tier: gold}}
"""


@pytest.fixture
def run(load_text: Load) -> Callable[..., list[Finding]]:
    def go(text: str, precedence: Precedence = Precedence.DOCUMENTED) -> list[Finding]:
        loaded = load_text(text)
        return lint(
            Inventory.from_objects(o.obj for o in loaded.objects), loaded.skipped, precedence
        )

    return go


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


def test_a_sound_configuration_has_no_findings(run: Callable[..., list[Finding]]) -> None:
    text = HCO.format(settings="{bandwidthPerMigration: 64Mi, completionTimeoutPerGiB: 800}")
    text += (
        NS
        + vmi("a", "{app: x}")
        + mp("p", "{selectors: {virtualMachineInstanceSelector: {app: x}}}")
    )
    assert run(text) == []


def test_post_copy_that_can_never_trigger(run: Callable[..., list[Finding]]) -> None:
    found = run(HCO.format(settings="{allowPostCopy: true, allowWorkloadDisruption: false}"))
    f = next(f for f in found if f.code == "LM101")
    assert (f.object, f.field) == (HCO_REF, "spec.liveMigrationConfig.allowWorkloadDisruption")
    policy = mp("pc", "{allowPostCopy: true, allowWorkloadDisruption: false, selectors: {}}")
    assert "LM101" in codes(run(policy))


def test_completion_timeout_shorter_than_bare_transfer_is_an_error(
    run: Callable[..., list[Finding]],
) -> None:
    # 1 GiB at 1 MiB/s takes 1024 s; 800 s/GiB can never be enough, whatever the VM's size.
    text = HCO.format(settings="{bandwidthPerMigration: 1Mi, completionTimeoutPerGiB: 800}")
    found = run(text + NS + vmi("a") + vmi("b", memory="64Gi"))
    f = next(f for f in found if f.code == "LM102")
    assert f.severity is Severity.ERROR
    assert f.object == HCO_REF
    assert "1024 s" in f.message and "2 VMI(s)" in f.message and "apps/a" in f.message


def test_hopeless_timeout_is_only_a_warning_when_post_copy_rescues_it(
    run: Callable[..., list[Finding]],
) -> None:
    text = HCO.format(settings="{bandwidthPerMigration: 1Mi, completionTimeoutPerGiB: 800}")
    text += (
        NS
        + vmi("a", "{heavy: 'yes'}")
        + mp(
            "heavy",
            "{allowPostCopy: true, selectors: {virtualMachineInstanceSelector: {heavy: 'yes'}}}",
        )
    )
    f = next(f for f in run(text) if f.code == "LM102")
    assert f.severity is Severity.WARNING and "post-copy" in f.message
    assert f.object == HCO_REF


def test_fast_enough_bandwidth_does_not_trigger_the_timeout_error(
    run: Callable[..., list[Finding]],
) -> None:
    text = HCO.format(settings="{bandwidthPerMigration: 2Mi, completionTimeoutPerGiB: 512}")
    assert "LM102" not in codes(run(text + NS + vmi("a")))  # exactly 512 s per GiB: enough


@pytest.mark.parametrize(
    ("settings", "code", "field"),
    [
        ("{completionTimeoutPerGiB: 0}", "LM103", "completionTimeoutPerGiB"),
        ("{progressTimeout: 0}", "LM104", "progressTimeout"),
        ("{parallelMigrationsPerCluster: 0}", "LM105", "parallelMigrationsPerCluster"),
        ("{parallelOutboundMigrationsPerNode: 0}", "LM105", "parallelOutboundMigrationsPerNode"),
        ("{parallelOutboundMigrationsPerNode: 8}", "LM106", "parallelOutboundMigrationsPerNode"),
        ("{allowPostCopy: true}", "LM111", "allowPostCopy"),
    ],
)
def test_cluster_setting_advice(
    run: Callable[..., list[Finding]], settings: str, code: str, field: str
) -> None:
    found = [f for f in run(HCO.format(settings=settings)) if f.code == code]
    assert len(found) == 1
    assert found[0].field == f"spec.liveMigrationConfig.{field}"
    assert found[0].object == HCO_REF


def test_zero_parallel_limit_fails_lint(run: Callable[..., list[Finding]]) -> None:
    found = run(HCO.format(settings="{parallelMigrationsPerCluster: 0}"))
    assert any(f.severity is Severity.ERROR for f in found)


def test_policy_with_the_same_selectors_as_a_lower_named_one_is_shadowed(
    run: Callable[..., list[Finding]],
) -> None:
    sel = "{selectors: {virtualMachineInstanceSelector: {app: x}}}"
    found = run(NS + vmi("a", "{app: x}") + mp("a-first", sel) + mp("b-second", sel))
    f = next(f for f in found if f.code == "LM107")
    assert f.object == "MigrationPolicy/b-second" and "a-first" in f.message
    assert "LM109" not in codes(found)  # reported once, as shadowed


def test_policy_matching_nothing_and_policy_always_beaten(
    run: Callable[..., list[Finding]],
) -> None:
    text = NS + vmi("a", "{app: x, env: prod}")
    text += mp("typo", "{selectors: {virtualMachineInstanceSelector: {app: y}}}")
    text += mp("broad", "{selectors: {virtualMachineInstanceSelector: {app: x}}}")
    text += mp("narrow", "{selectors: {virtualMachineInstanceSelector: {app: x, env: prod}}}")
    found = run(text)
    assert [f.object for f in found if f.code == "LM108"] == ["MigrationPolicy/typo"]
    assert [f.object for f in found if f.code == "LM109"] == ["MigrationPolicy/broad"]


def test_hyperconverged_and_kubevirt_together(run: Callable[..., list[Finding]]) -> None:
    kv = """
---
apiVersion: kubevirt.io/v1
kind: KubeVirt
metadata: {name: kubevirt, namespace: openshift-cnv}
spec: {configuration: {migrations: {progressTimeout: 20}}}
"""
    found = run(HCO.format(settings="{}") + kv)
    f = next(f for f in found if f.code == "LM110")
    assert f.object == "KubeVirt/openshift-cnv/kubevirt"


def test_two_hyperconverged_objects(run: Callable[..., list[Finding]]) -> None:
    second = HCO.format(settings="{}").replace("kubevirt-hyperconverged", "other")
    found = run(HCO.format(settings="{}") + "\n---\n" + second)
    assert "LM112" in codes(found)


def test_precedence_disagreement_is_reported_per_vmi(run: Callable[..., list[Finding]]) -> None:
    text = NS + vmi("a", "{zone: x}")
    text += mp("by-ns", "{selectors: {namespaceSelector: {tier: gold}}}")
    text += mp("by-vmi", "{selectors: {virtualMachineInstanceSelector: {zone: x}}}")
    f = next(f for f in run(text) if f.code == "LM114")
    assert f.object == "VirtualMachineInstance/apps/a"
    assert "by-ns" in f.message and "by-vmi" in f.message


def test_namespace_missing_from_input_is_reported_when_it_matters(
    run: Callable[..., list[Finding]],
) -> None:
    text = vmi("a", ns="elsewhere") + mp("p", "{selectors: {namespaceSelector: {tier: gold}}}")
    f = next(f for f in run(text) if f.code == "LM113")
    assert f.object == "Namespace/elsewhere"


def test_unknown_memory_and_skipped_kinds_are_info(run: Callable[..., list[Finding]]) -> None:
    text = """
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {name: nomem, namespace: apps}
spec: {}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
"""
    found = run(text)
    assert {f.code: f.severity for f in found} == {"LM116": Severity.INFO, "LM115": Severity.INFO}


def test_experimental_policy_settings_are_kept_and_reported_as_ignored(
    load_text: Callable[[str], LoadResult],
) -> None:
    loaded = load_text(
        """
        apiVersion: migrations.kubevirt.io/v1alpha1
        kind: MigrationPolicy
        metadata: {name: alpha}
        spec:
          selectors: {}
          maxDowntimeMs: 100
          experimental: {someAlphaKnob: true}
        """
    )
    (policy,) = loaded.objects
    assert to_dict(policy.obj)["spec"]["experimental"] == {"someAlphaKnob": True}  # kept
    inv = Inventory.from_objects(o.obj for o in loaded.objects)
    (found,) = [f for f in lint(inv, []) if f.code == "LM117"]
    assert found.field == "spec.experimental" and "someAlphaKnob" in found.message
