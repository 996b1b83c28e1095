"""What a drain does about each VMI on the node (SPEC §5), as a table of cases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from livemig.api.lifecycle import EVACUATION_ANNOTATION, MigrationObject, Phase
from livemig.api.models import EvictionStrategy as ES
from livemig.api.status import timestamp
from livemig.evacuation import (
    Resident,
    Step,
    attempt_name,
    backoff_delay,
    plan,
    strategy_of,
)
from livemig.scheduling import NodeView, handover_pending

GI = 2**30
T0 = 1_800_000_000.0  # the drain begins


def stamp(seconds: float) -> str:
    return timestamp(datetime.fromtimestamp(seconds, UTC))


def node(
    name: str, free: int = 4 * GI, labels: dict[str, str] | None = None, **kw: Any
) -> NodeView:
    return NodeView(
        name,
        kw.get("ready", True),
        kw.get("cordoned", False),
        8 * GI,
        8 * GI - free,
        labels or {},
    )


def vmi(name: str, memory: int = GI, strategy: ES | None = None, **kw: Any) -> Resident:
    return Resident(
        "default",
        name,
        memory,
        kw.get("running", True),
        strategy,
        kw.get("selector", {}),
        created=stamp(T0 - 1000),
    )


def migration(
    name: str,
    vmi_name: str,
    phase: Phase,
    *,
    created: float = T0 + 1,
    ended: float | None = None,
    evacuating: str | None = "n1",
    source: str = "n1",
    reason: str | None = None,
    processed: int = 0,
    unschedulable: str | None = None,
) -> MigrationObject:
    status: dict[str, Any] = {"phase": phase.value, "migrationState": {"sourceNode": source}}
    state = status["migrationState"]
    if ended is not None:
        state["endTimestamp"] = stamp(ended)
    if reason:
        state["failureReason"] = reason
    if processed:
        state["dataProcessedBytes"] = processed
        state["dataTotalBytes"] = processed
    if unschedulable:
        status["conditions"] = [
            {
                "type": "Scheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": unschedulable,
            }
        ]
    return MigrationObject.of(
        {
            "metadata": {
                "name": name,
                "namespace": "default",
                "creationTimestamp": stamp(created),
                "annotations": {EVACUATION_ANNOTATION: evacuating} if evacuating else {},
            },
            "spec": {"vmiName": vmi_name},
            "status": status,
        }
    )


OTHERS = [node("n1", cordoned=True), node("n2"), node("n3")]


def steps(p: Any) -> dict[str, tuple[Step, str]]:
    return {d.vmi[1]: (d.step, d.why) for d in p.decisions}


def test_every_vmi_that_fits_elsewhere_is_migrated_with_a_numbered_evacuation() -> None:
    p = plan("n1", [vmi("a"), vmi("b")], [], OTHERS, None, T0, T0)
    assert [(d.vmi[1], d.step, d.migration) for d in p.decisions] == [
        ("a", Step.MIGRATE, "a-evacuation-1"),
        ("b", Step.MIGRATE, "b-evacuation-1"),
    ]
    assert p.progress.vms_left == 2 and p.progress.queued == 2 and not p.progress.done


def test_room_is_reserved_vm_by_vm_so_the_last_one_that_does_not_fit_is_blocked() -> None:
    nodes = [node("n1", cordoned=True), node("n2", free=3 * GI)]
    p = plan("n1", [vmi("a", 2 * GI), vmi("b", 2 * GI)], [], nodes, None, T0, T0)
    got = steps(p)
    assert got["a"][0] is Step.MIGRATE
    assert got["b"][0] is Step.BLOCKED
    assert "needs 2Gi" in got["b"][1] and "n2 has 1Gi free" in got["b"][1]


@pytest.mark.parametrize(
    ("own", "cluster", "step", "words"),
    [
        (ES.NONE, None, Step.BLOCKED, "evictionStrategy None (the VMI's)"),
        (None, ES.NONE, Step.BLOCKED, "evictionStrategy None (the cluster's)"),
        (ES.EXTERNAL, None, Step.BLOCKED, "outside controller"),
        (None, ES.LIVE_MIGRATE, Step.BLOCKED, "cannot migrate: no node fits"),
        (None, None, Step.BLOCKED, "lacks label disk=nvme"),  # default: LiveMigrate
        (ES.LIVE_MIGRATE_IF_POSSIBLE, ES.NONE, Step.SHUT_DOWN, "LiveMigrateIfPossible"),
    ],
)
def test_a_vmi_that_cannot_migrate_is_handled_by_its_eviction_strategy(
    own: ES | None, cluster: ES | None, step: Step, words: str
) -> None:
    nvme = vmi("a", strategy=own, selector={"disk": "nvme"})
    p = plan("n1", [nvme], [], OTHERS, cluster, T0, T0)
    (d,) = p.decisions
    assert d.step is step
    assert words in d.why


def test_the_vmis_own_strategy_wins_over_the_clusters() -> None:
    assert strategy_of(ES.LIVE_MIGRATE, ES.NONE) == (ES.LIVE_MIGRATE, "the VMI's")
    assert strategy_of(None, ES.NONE) == (ES.NONE, "the cluster's")
    assert strategy_of(None, None) == (ES.LIVE_MIGRATE, "the default")


def test_unfinished_migrations_count_as_in_flight_queued_or_blocked() -> None:
    ms = [
        migration("a-evacuation-1", "a", Phase.RUNNING),
        migration("b-evacuation-1", "b", Phase.PENDING),
        migration(
            "c-evacuation-1", "c", Phase.PENDING, unschedulable="no node fits: n2 is cordoned"
        ),
        migration("d-by-hand", "d", Phase.SCHEDULED, evacuating=None),
    ]
    residents = [vmi(x) for x in "abcd"]
    p = plan("n1", residents, ms, OTHERS, None, T0 + 5, T0)
    got = steps(p)
    assert got["a"][0] is Step.IN_FLIGHT
    assert got["b"][0] is Step.QUEUED
    assert got["c"] == (
        Step.BLOCKED,
        "c-evacuation-1 waits for a target: no node fits: n2 is cordoned",
    )
    assert got["d"][0] is Step.IN_FLIGHT  # a user's migration moves it just as well
    assert (p.progress.in_flight, p.progress.queued, p.progress.blocked) == (2, 1, 1)


def test_a_vm_that_just_moved_is_not_migrated_again_while_its_hand_over_is_written() -> None:
    """The source QEMU of a VM that just moved is a stale copy until the VMI names its new
    node; a second migration from it would roll the guest back."""
    done = migration("a-evacuation-1", "a", Phase.SUCCEEDED, ended=T0 + 3, processed=GI)
    p = plan("n1", [vmi("a")], [done], OTHERS, None, T0 + 4, T0)
    assert steps(p)["a"][0] is Step.IN_FLIGHT
    assert handover_pending("n1", stamp(T0 - 1000), [done]) == done
    assert handover_pending("n2", stamp(T0 - 1000), [done]) is None  # handed over already
    # A VM restarted since (a new VMI instance) is not waiting for that old migration.
    assert handover_pending("n1", stamp(T0 + 10), [done]) is None


def test_failed_evacuations_back_off_20_s_doubling_to_5_minutes_from_the_last_failure() -> None:
    assert [backoff_delay(n) for n in range(7)] == [0, 20, 40, 80, 160, 300, 300]
    first = migration("a-evacuation-1", "a", Phase.FAILED, ended=T0 + 10, reason="progress timeout")
    p = plan("n1", [vmi("a")], [first], OTHERS, None, T0 + 25, T0)
    (d,) = p.decisions
    assert d.step is Step.BACKING_OFF
    assert d.due == T0 + 30
    assert d.why == "a-evacuation-1 failed (progress timeout); retry 2 in 5 s"
    (d,) = plan("n1", [vmi("a")], [first], OTHERS, None, T0 + 30, T0).decisions
    assert (d.step, d.migration) == (Step.MIGRATE, "a-evacuation-2")
    second = migration("a-evacuation-2", "a", Phase.FAILED, created=T0 + 31, ended=T0 + 40)
    (d,) = plan("n1", [vmi("a")], [first, second], OTHERS, None, T0 + 41, T0).decisions
    assert d.due == T0 + 40 + 40


def test_a_success_resets_the_backoff() -> None:
    ms = [
        migration("a-evacuation-1", "a", Phase.FAILED, created=T0 + 1, ended=T0 + 2),
        migration(
            "a-evacuation-2", "a", Phase.SUCCEEDED, created=T0 + 3, ended=T0 + 4, source="n0"
        ),
        migration("a-evacuation-3", "a", Phase.FAILED, created=T0 + 5, ended=T0 + 6),
    ]
    (d,) = plan("n1", [vmi("a")], ms, OTHERS, None, T0 + 7, T0).decisions
    assert d.due == T0 + 6 + 20


def test_attempt_names_go_one_past_the_highest_kept() -> None:
    kept = [migration(f"a-evacuation-{n}", "a", Phase.FAILED) for n in (2, 3, 7)]
    assert attempt_name("a", kept) == "a-evacuation-8"
    long = "x" * 253
    assert len(attempt_name(long, [])) <= 253


def test_progress_counts_this_drains_bytes_and_estimates_the_time_left() -> None:
    ms = [
        migration("a-evacuation-1", "a", Phase.SUCCEEDED, ended=T0 + 5, processed=GI, source="n0"),
        migration("old-evacuation-1", "z", Phase.SUCCEEDED, created=T0 - 3600, processed=GI),
        migration("b-evacuation-1", "b", Phase.RUNNING, processed=GI // 2),
    ]
    p = plan("n1", [vmi("b"), vmi("c")], ms, OTHERS, None, T0 + 10, T0)
    pr = p.progress
    assert pr.migrated == 1
    assert pr.bytes_moved == GI + GI // 2  # the drain an hour ago does not count
    assert pr.rate == pytest.approx(1.5 * GI / 10)
    assert pr.seconds_left is not None and pr.seconds_left > 0


def test_a_drained_node_is_done() -> None:
    p = plan("n1", [], [], OTHERS, None, T0, T0)
    assert p.progress.done and p.decisions == ()


def test_a_vmi_that_is_not_running_yet_waits() -> None:
    (d,) = plan("n1", [vmi("a", running=False)], [], OTHERS, None, T0, T0).decisions
    assert d.step is Step.WAITING


def test_the_largest_vms_are_evacuated_first_so_the_drain_does_not_end_on_a_big_one() -> None:
    sizes = {"small": GI // 2, "big": 3 * GI, "mid": GI}
    p = plan("n1", [vmi(n, m) for n, m in sizes.items()], [], OTHERS, None, T0, T0)
    assert [d.vmi[1] for d in p.decisions] == ["big", "mid", "small"]


def test_the_vms_of_a_node_that_is_not_ready_block_the_drain_with_why() -> None:
    nodes = [node("n1", cordoned=True, ready=False), node("n2")]
    (d,) = plan("n1", [vmi("a")], [], nodes, None, T0, T0).decisions
    assert d.step is Step.BLOCKED and "n1 is NotReady" in d.why
