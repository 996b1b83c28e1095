"""Admission under the parallel limits, and target choice."""

from __future__ import annotations

import pytest

from livemig.api.lifecycle import Phase
from livemig.scheduling import (
    UNSET,
    MigrationView,
    NodeView,
    admit,
    choose_node,
    priority_rank,
    silent_nodes,
    target_selector,
)


def m(key: str, phase: Phase, node: str, priority: int = UNSET, order: int = 0) -> MigrationView:
    return MigrationView(key, phase, node, priority, created=f"2026-01-01T00:00:{order:09.6f}Z")


def keys(ms: list[MigrationView]) -> list[str]:
    return [x.key for x in ms]


def test_admission_fills_free_cluster_slots_in_creation_order() -> None:
    ms = [
        m("a", Phase.RUNNING, "n1"),
        m("c", Phase.PENDING, "n2", order=3),
        m("b", Phase.PENDING, "n3", order=2),
        m("d", Phase.PENDING, "n4", order=4),
    ]
    assert keys(admit(ms, per_cluster=3, per_node=2)) == ["b", "c"]


def test_per_node_limit_skips_to_another_node() -> None:
    ms = [
        m("a", Phase.RUNNING, "n1"),
        m("b", Phase.PENDING, "n1", order=1),
        m("c", Phase.PENDING, "n2", order=2),
    ]
    assert keys(admit(ms, per_cluster=5, per_node=1)) == ["c"]


def test_admitted_ones_count_against_the_limits_immediately() -> None:
    ms = [m(k, Phase.PENDING, "n1", order=i) for i, k in enumerate("abcd")]
    assert keys(admit(ms, per_cluster=5, per_node=2)) == ["a", "b"]
    assert keys(admit(ms, per_cluster=1, per_node=2)) == ["a"]


def test_admission_follows_kubevirts_priorities_then_creation_order() -> None:
    """system-critical > user-triggered > system-maintenance (evacuations) > unset: a user's
    request goes before a drain's, as in KubeVirt 2026."""
    ms = [
        m("unset", Phase.PENDING, "n1", priority_rank(None), order=1),
        m("evac", Phase.PENDING, "n2", priority_rank("system-maintenance"), order=2),
        m("user", Phase.PENDING, "n3", priority_rank("user-triggered"), order=3),
        m("critical", Phase.PENDING, "n4", priority_rank("system-critical"), order=4),
        m("user-later", Phase.PENDING, "n5", priority_rank("user-triggered"), order=5),
    ]
    assert keys(admit(ms, per_cluster=5, per_node=1)) == [
        "critical",
        "user",
        "user-later",
        "evac",
        "unset",
    ]
    assert keys(admit(ms, per_cluster=1, per_node=1)) == ["critical"]


def test_added_node_selector_narrows_and_never_overrides_the_vms_own() -> None:
    assert target_selector({"disk": "ssd"}, {"zone": "b", "disk": "hdd"}) == {
        "zone": "b",
        "disk": "ssd",  # the VM's key wins
    }
    assert target_selector({}, None) == {}


@pytest.mark.parametrize(
    "phase",
    [Phase.SCHEDULING, Phase.SCHEDULED, Phase.PREPARING_TARGET, Phase.TARGET_READY, Phase.RUNNING],
)
def test_every_phase_between_scheduling_and_running_holds_a_slot(phase: Phase) -> None:
    assert admit([m("a", phase, "n1"), m("b", Phase.PENDING, "n2")], 1, 1) == []


@pytest.mark.parametrize("phase", [Phase.SUCCEEDED, Phase.FAILED])
def test_finished_migrations_free_their_slot(phase: Phase) -> None:
    assert keys(admit([m("a", phase, "n1"), m("b", Phase.PENDING, "n1")], 1, 1)) == ["b"]


GiB = 2**30


def node(
    name: str,
    used: int = 0,
    cap: int = 8 * GiB,
    ready: bool = True,
    cordoned: bool = False,
    labels: dict[str, str] | None = None,
) -> NodeView:
    return NodeView(name, ready, cordoned, cap, used, labels or {})


def test_the_least_loaded_fitting_node_is_chosen() -> None:
    nodes = [node("n1", used=1 * GiB), node("n2", used=6 * GiB), node("n3", used=2 * GiB)]
    best, _ = choose_node(nodes, GiB, {}, exclude="n1")
    assert best is not None and best.name == "n3"


def test_no_node_fits_says_why_for_each() -> None:
    nodes = [
        node("src"),
        node("down", ready=False),
        node("cordoned", cordoned=True),
        node("full", used=8 * GiB),
        node("gpu-less"),
    ]
    best, why = choose_node(nodes, GiB, {"gpu": "yes"}, exclude="src")
    assert best is None
    for text in (
        "down is not Ready",
        "cordoned is cordoned",
        "full has 0 bytes free",
        "gpu-less lacks label gpu=yes",
    ):
        assert text in why
    assert why.startswith("no node fits: needs 1Gi: ")


def test_unschedulable_reasons_are_in_words_and_sizes_in_mi_gi() -> None:
    """The document's 6Gi VM on 4Gi nodes: each node says what it lacks."""
    nodes = [
        node("node-1", cap=4 * GiB, used=GiB // 2, labels={"disktype": "ssd"}),
        node("node-2", cap=8 * GiB, labels={"disktype": "hdd"}),
        node("node-3", cap=8 * GiB),
    ]
    best, why = choose_node(nodes, 6 * GiB, {"disktype": "ssd"})
    assert best is None
    assert why == (
        "no node fits: needs 6Gi: node-1 has 3.5Gi free; "
        "node-2 has label disktype=hdd, not ssd; node-3 lacks label disktype=ssd"
    )


def test_silence_is_measured_against_the_latest_heartbeat_of_any_node() -> None:
    assert silent_nodes({"n1": 100.0, "n2": 70.0}, now=120.0, timeout=10.0) == {"n2": 30.0}


@pytest.mark.parametrize(
    ("heard", "silent"),
    [
        ({"n1": 100.0, "n2": 100.0, "n3": 80.0}, {"n3"}),  # one quiet node: it is silent
        ({"n1": 60.0, "n2": 65.0, "n3": 60.0}, set()),  # all quiet at once: the control plane
        ({"n1": 80.0, "n2": 85.0, "n3": 99.0}, {"n1", "n2"}),
        ({"n1": 60.0, "n2": 65.0, "n3": 99.0}, {"n1", "n2"}),  # the stall ended for n3 only
        ({"n1": 80.0}, {"n1"}),  # a lone node cannot be told from a stall: judged by now
        ({"n1": 95.0, "n2": 91.0}, set()),  # within the timeout
        ({}, set()),
    ],
)
def test_silent_nodes_are_judged_by_the_controllers_clock_and_not_all_at_once(
    heard: dict[str, float], silent: set[str]
) -> None:
    assert set(silent_nodes(heard, now=100.0, timeout=10.0)) == silent


def test_a_vm_that_just_landed_counts_on_its_target_until_it_is_handed_over() -> None:
    from datetime import UTC, datetime

    from livemig.api.lifecycle import MigrationStatus
    from livemig.scheduling import Placement, memory_in_use

    now = datetime(2026, 11, 29, tzinfo=UTC)
    gib = 2**30
    moving = (
        MigrationStatus()
        .admit("node-1", now)
        .schedule("node-1", "node-2", gib, None, {}, now)
        .preparing(now)
        .target_ready("tcp:h:1", now)
        .start(now)
    )
    landed = moving.finish(now, None, 10, 1.0)
    a = Placement(("default", "a"), "node-1", gib)  # Succeeded, VMI not yet handed over
    handed = Placement(("default", "a"), "node-2", gib)
    # In flight: on its source and reserved on its target.
    assert memory_in_use([a], [(("default", "a"), moving)]) == {"node-1": gib, "node-2": gib}
    # Landed, VMI still names the source: still counted on the target (seen: the next VM
    # was sent to node-2 while node-3 was empty).
    assert memory_in_use([a], [(("default", "a"), landed)])["node-2"] == gib
    # Handed over: once, on the target.
    assert memory_in_use([handed], [(("default", "a"), landed)]) == {"node-2": gib}
    failed = moving.fail("broke", now)
    assert memory_in_use([a], [(("default", "a"), failed)]) == {"node-1": gib}
