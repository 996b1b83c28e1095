"""The migration lifecycle as a table: which step applies in which phase, what each records,
and that the API's shape goes in and out unchanged."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from livemig.api.lifecycle import USER_CANCEL, Figures, MigrationStatus, Phase, transition
from livemig.api.transfer import MigrationMode
from livemig.api.vmi_status import VMIPhase, VMIStatus, vmi_failed, vmi_handed_over, vmi_running
from livemig.errors import CancelRefused, IllegalTransition

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
CONFIG = {"bandwidthPerMigration": 64 * 2**20}
Step = Callable[[MigrationStatus], MigrationStatus]

STEPS: dict[str, Step] = {
    "admit": lambda s: s.admit("node-1", NOW),
    "refuse": lambda s: s.refuse("no such VMI", NOW),
    "schedule": lambda s: s.schedule("node-1", "node-2", 2**30, "p", CONFIG, NOW),
    "preparing": lambda s: s.preparing(NOW),
    "target_ready": lambda s: s.target_ready("tcp:127.0.0.1:5000", NOW),
    "start": lambda s: s.start(NOW),
    "progress": lambda s: s.progress(Figures(total=10, processed=5, remaining=5)),
    "switch_mode": lambda s: s.switch_mode(MigrationMode.POST_COPY),
    "finish": lambda s: s.finish(NOW, None, 20, 1.5),
    "fail": lambda s: s.fail("broke", NOW),
    "fail_before_transfer": lambda s: s.fail_before_transfer("node gone", NOW),
    "request_abort": lambda s: s.request_abort("target silent"),
    "report_target_lost": lambda s: s.report_target_lost(),
    "offer_recovery": lambda s: s.switch_mode(MigrationMode.POST_COPY).offer_recovery("tcp:h:2"),
}
#: The happy path, in order; the status reached after each step.
PATH = ["admit", "schedule", "preparing", "target_ready", "start"]


def at(phase: Phase) -> MigrationStatus:
    """A status in ``phase``, reached by the real steps."""
    st = MigrationStatus()
    if phase is Phase.UNSET:
        return st
    for name in PATH:
        st = STEPS[name](st)
        if st.phase is phase:
            return st
    if phase is Phase.SUCCEEDED:
        return STEPS["finish"](st)
    assert phase is Phase.FAILED
    return STEPS["fail"](st)


#: phase → the steps that apply there (every other step is an IllegalTransition).
ALLOWED: dict[Phase, set[str]] = {
    Phase.UNSET: {"admit", "refuse", "fail"},
    Phase.PENDING: {"schedule", "fail", "fail_before_transfer"},
    Phase.SCHEDULED: {"preparing", "fail", "fail_before_transfer"},
    Phase.PREPARING_TARGET: {"target_ready", "fail", "fail_before_transfer"},
    Phase.TARGET_READY: {"start", "fail", "fail_before_transfer"},
    Phase.RUNNING: {
        "progress",
        "switch_mode",
        "finish",
        "fail",
        "request_abort",
        "offer_recovery",
        "report_target_lost",
    },
    Phase.SUCCEEDED: set(),
    Phase.FAILED: set(),
}


@pytest.mark.parametrize("phase", list(ALLOWED))
@pytest.mark.parametrize("step", list(STEPS))
def test_each_step_applies_only_in_its_phases(phase: Phase, step: str) -> None:
    st = at(phase)
    if step in ALLOWED[phase]:
        assert STEPS[step](st) != st
    else:
        with pytest.raises(IllegalTransition):
            STEPS[step](st)


def test_the_happy_path_records_every_phase_with_its_time() -> None:
    st = STEPS["finish"](at(Phase.RUNNING))
    assert [p for p, _ in st.transitions] == [
        Phase.PENDING,
        Phase.SCHEDULING,
        Phase.SCHEDULED,
        Phase.PREPARING_TARGET,
        Phase.TARGET_READY,
        Phase.RUNNING,
        Phase.SUCCEEDED,
    ]
    assert st.succeeded and st.started and st.ended and st.downtime_ms == 20
    assert st.phase_time(Phase.RUNNING) == "2026-11-29T12:00:00.000000Z"


@pytest.mark.parametrize(
    ("phase", "active", "slot"),
    [
        (Phase.UNSET, True, False),
        (Phase.PENDING, True, False),
        (Phase.SCHEDULED, True, True),
        (Phase.PREPARING_TARGET, True, True),
        (Phase.TARGET_READY, True, True),
        (Phase.RUNNING, True, True),
        (Phase.SUCCEEDED, False, False),
        (Phase.FAILED, False, False),
    ],
)
def test_only_admitted_unfinished_migrations_hold_a_slot(
    phase: Phase, active: bool, slot: bool
) -> None:
    st = at(phase)
    assert (st.is_active, st.holds_slot, st.can_cancel) == (active, slot, active)


def test_post_copy_cannot_be_cancelled_left_or_aborted() -> None:
    st = at(Phase.RUNNING).switch_mode(MigrationMode.POST_COPY)
    assert st.in_post_copy and not st.can_cancel
    with pytest.raises(CancelRefused):
        st.cancel(NOW)
    with pytest.raises(IllegalTransition):
        st.switch_mode(MigrationMode.PAUSED)
    with pytest.raises(IllegalTransition):
        st.request_abort("target silent")
    assert st.fail("post-copy interrupted: target lost", NOW).reason.startswith("post-copy")


def test_an_abort_request_forbids_the_switch_to_post_copy() -> None:
    st = at(Phase.RUNNING).request_abort("node node-2 stopped reporting")
    with pytest.raises(IllegalTransition):
        st.switch_mode(MigrationMode.POST_COPY)
    assert st.can_cancel


def test_a_cancel_keeps_the_last_figures_when_qemu_reports_zeros() -> None:
    figures = Figures(total=100, processed=60, remaining=40, transfer_rate=5)
    st = at(Phase.RUNNING).progress(figures).cancel(NOW, Figures())
    assert st.phase is Phase.FAILED and st.aborted and st.reason == USER_CANCEL
    assert st.figures == figures


def test_the_api_shape_round_trips_and_unknown_keys_survive() -> None:
    st = STEPS["finish"](at(Phase.RUNNING).progress(Figures(total=10, processed=10)))
    status = st.to_status({"conditions": [{"type": "Synchronized", "status": "True"}]})
    status["migrationState"]["vendorField"] = "kept"
    again = MigrationStatus.from_status(status)
    assert again.to_status(status) == status
    assert status["conditions"] == [{"type": "Synchronized", "status": "True"}]
    assert status["migrationState"]["completed"] is True
    assert status["phase"] == "Succeeded"


@pytest.mark.parametrize(
    "status",
    [
        {},
        {"phase": "Exploded"},
        {"phase": "Running", "migrationState": {"mode": "Sideways", "memoryBytes": "lots"}},
        {"phaseTransitionTimestamps": ["not a mapping"]},
    ],
)
def test_odd_statuses_read_as_something_sane(status: dict[str, Any]) -> None:
    st = MigrationStatus.from_status(status)
    assert st.memory_bytes == 0 and st.mode is None


def test_transition_writes_nothing_when_the_step_no_longer_applies() -> None:
    obj: dict[str, Any] = {"status": at(Phase.SUCCEEDED).to_status()}
    assert transition(obj, lambda s: s.fail("late", NOW)) is None
    fresh: dict[str, Any] = {"metadata": {"name": "m"}}
    out = transition(fresh, lambda s: s.admit("node-1", NOW))
    assert out is not None and out["status"]["phase"] == "Pending"


def test_a_vmi_is_handed_over_once_and_names_the_process_that_runs_it() -> None:
    vmi: dict[str, Any] = {"status": {"phase": "Running", "nodeName": "node-1"}}
    vmi_running(vmi, "node-1", "QEMU pid 100")
    moved = vmi_handed_over(vmi, "node-1", "node-2", {"completed": True})
    assert moved is not None and VMIStatus.of(moved).node == "node-2"
    assert vmi_handed_over(moved, "node-1", "node-2", {}) is None  # already done
    vmi_running(moved, "node-2", "QEMU pid 200")
    ready = [c for c in moved["status"]["conditions"] if c["type"] == "Ready"]
    assert ready == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Running",
            "message": "QEMU pid 200 on node-2",
        }
    ]


def test_a_failed_vmi_stays_failed_and_only_its_node_can_fail_it() -> None:
    vmi: dict[str, Any] = {"status": {"phase": "Running", "nodeName": "node-1"}}
    assert vmi_failed(vmi, "its QEMU died", node="node-2") is None
    failed = vmi_failed(vmi, "its QEMU died", node="node-1")
    assert failed is not None
    st = VMIStatus.of(failed)
    assert st.phase is VMIPhase.FAILED and st.reason == "its QEMU died" and not st.on("node-1")
    assert vmi_failed(failed, "again") is None


def test_a_recovery_is_offered_only_in_post_copy_and_counted() -> None:
    with pytest.raises(IllegalTransition):
        at(Phase.RUNNING).offer_recovery("tcp:h:1")
    st = at(Phase.RUNNING).switch_mode(MigrationMode.POST_COPY)
    st = st.offer_recovery("tcp:h:1").offer_recovery("tcp:h:2")
    assert (st.recoveries, st.recovery_address) == (2, "tcp:h:2")
    again = MigrationStatus.from_status(st.to_status())
    assert (again.recoveries, again.recovery_address) == (2, "tcp:h:2")
