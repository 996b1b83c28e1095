"""Input limits at the door for files (lint, explain, apply): alias bombs, deep nesting and
invalid Unicode are refused with a line, quickly, and normal aliases and merge keys still work."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from livemig.api.limits import InvalidBody, check_value
from livemig.api.loading import LoadResult
from livemig.clock import RealClock
from livemig.errors import Problem

POLICY = """
apiVersion: migrations.kubevirt.io/v1alpha1
kind: MigrationPolicy
metadata: {name: p}
spec:
  selectors: {}
"""


def billion_laughs() -> str:
    lines = ['  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"  {name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
        previous = name
    return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n" + "\n".join(lines)


def test_a_billion_laughs_file_is_refused_at_once(
    problems_of: Callable[[str], list[Problem]],
) -> None:
    clock = RealClock()
    started = clock.now()
    problems = problems_of(billion_laughs())
    assert clock.now() - started < 1.0  # it would take minutes and gigabytes to expand
    assert len(problems) == 1
    assert problems[0].code == "LM001"
    assert problems[0].message.startswith("YAML refused: aliases expand to more than 100,000")
    assert problems[0].line is not None


@pytest.mark.parametrize("depth", [150, 950, 5000])
def test_deep_nesting_is_refused_with_the_limit(
    depth: int, problems_of: Callable[[str], list[Problem]]
) -> None:
    text = POLICY + "  deep: " + "[" * depth + "]" * depth + "\n"
    (problem,) = problems_of(text)
    assert problem.message == "YAML refused: nested deeper than 100 levels"


def test_a_lone_surrogate_in_yaml_is_refused(problems_of: Callable[[str], list[Problem]]) -> None:
    text = POLICY.replace("{name: p}", '{name: p, annotations: {a: "x\\ud800y"}}')
    (problem,) = problems_of(text)
    assert "invalid Unicode" in problem.message  # libyaml's words, or ours
    assert problem.line == 3


def test_ordinary_aliases_and_merge_keys_still_load(load_text: Callable[[str], LoadResult]) -> None:
    text = """
    apiVersion: migrations.kubevirt.io/v1alpha1
    kind: MigrationPolicy
    metadata:
      name: p
      labels: &common {team: db, tier: gold}
      annotations:
        <<: *common
        note: merged
    spec:
      selectors:
        virtualMachineInstanceSelector: *common
    """
    (loaded,) = load_text(text).objects
    assert loaded.obj.metadata.annotations == {"team": "db", "tier": "gold", "note": "merged"}
    assert loaded.obj.spec.selectors.virtual_machine_instance_selector == {
        "team": "db",
        "tier": "gold",
    }


def test_check_value_names_the_field_of_a_lone_surrogate_and_the_depth() -> None:
    with pytest.raises(InvalidBody, match=r"metadata\.annotations\.a: a string holds invalid"):
        check_value({"metadata": {"annotations": {"a": "\ud800"}}})
    deep: list[object] = []
    current = deep
    for _ in range(120):
        current.append([])
        current = current[0]  # type: ignore[assignment]
    with pytest.raises(InvalidBody, match="nested deeper than 100 levels"):
        check_value({"spec": deep})
    check_value({"spec": {"fine": ["é", "✓"]}})  # real Unicode is fine
