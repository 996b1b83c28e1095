"""The monitor's rules, in SPEC §4 order, at and around every boundary."""

from __future__ import annotations

from dataclasses import replace

import pytest

from livemig.api.transfer import MigrationMode, TransferStats, TransferStatus
from livemig.convergence import (
    COMPLETION_TIMEOUT,
    PROGRESS_TIMEOUT,
    Action,
    MonitorState,
    acceptable_completion_time,
    decide,
)
from livemig.policy import ClusterConfig, effective_configuration

GIB = 2**30
BASE = effective_configuration(ClusterConfig())  # 150 s/GiB, progress 150 s, no post-copy


def conf(**changes: object):  # type: ignore[no-untyped-def]
    return replace(BASE, **changes)


def sample(
    elapsed: float, remaining: int = 100, status: TransferStatus = TransferStatus.ACTIVE
) -> TransferStats:
    return TransferStats(status, remaining_bytes=remaining, elapsed=elapsed)


def test_acceptable_time_is_timeout_per_gib_times_data_size() -> None:
    assert acceptable_completion_time(conf(completion_timeout_per_gib=800), 6 * GIB) == 4800
    assert acceptable_completion_time(conf(completion_timeout_per_gib=150), GIB // 2) == 75
    assert acceptable_completion_time(conf(completion_timeout_per_gib=0), GIB) == 0


def start(config=BASE, data: int = GIB) -> MonitorState:  # type: ignore[no-untyped-def]
    return MonitorState.start(config, data)


@pytest.mark.parametrize(
    ("config", "elapsed", "action", "reason", "mode"),
    [
        # completion timeout 150 s for 1 GiB; strictly greater triggers
        (BASE, 150.0, Action.CONTINUE, None, MigrationMode.PRE_COPY),
        (BASE, 150.01, Action.CANCEL, COMPLETION_TIMEOUT, MigrationMode.PRE_COPY),
        (
            conf(allow_workload_disruption=True, allow_post_copy=True),
            150.01,
            Action.START_POST_COPY,
            COMPLETION_TIMEOUT,
            MigrationMode.POST_COPY,
        ),
        (
            conf(allow_workload_disruption=True, allow_post_copy=False),
            150.01,
            Action.PAUSE_GUEST,
            COMPLETION_TIMEOUT,
            MigrationMode.PAUSED,
        ),
        # allowPostCopy without allowWorkloadDisruption cannot switch: cancel
        (
            conf(allow_workload_disruption=False, allow_post_copy=True),
            150.01,
            Action.CANCEL,
            COMPLETION_TIMEOUT,
            MigrationMode.PRE_COPY,
        ),
        # 0 disables the completion timeout
        (
            conf(completion_timeout_per_gib=0),
            10_000.0,
            Action.CONTINUE,
            None,
            MigrationMode.PRE_COPY,
        ),
    ],
)
def test_completion_timeout_rules(config, elapsed, action, reason, mode) -> None:  # type: ignore[no-untyped-def]
    # remaining keeps going down, so progress never times out here
    state = replace(start(config), last_remaining=10**9, last_progress=elapsed)
    d = decide(state, sample(elapsed, remaining=1), config)
    assert (d.action, d.reason, d.state.mode) == (action, reason, mode)


def test_pausing_doubles_the_acceptable_time_then_cancels_at_the_new_deadline() -> None:
    config = conf(allow_workload_disruption=True)
    state = replace(start(config), last_remaining=10**9)
    d = decide(state, sample(151, remaining=500), config)
    assert d.action is Action.PAUSE_GUEST and d.state.acceptable_time == 300
    d2 = decide(d.state, sample(299, remaining=400), config)
    assert d2.action is Action.CONTINUE  # paused once; not paused again
    d3 = decide(d2.state, sample(301, remaining=300), config)
    assert (d3.action, d3.reason) == (Action.CANCEL, COMPLETION_TIMEOUT)
    assert d3.deadline == 300


def test_post_copy_is_never_cancelled_whatever_the_time_or_progress() -> None:
    config = conf(allow_workload_disruption=True, allow_post_copy=True, progress_timeout=1)
    state = replace(start(config), mode=MigrationMode.POST_COPY, last_remaining=5)
    for elapsed in (10.0, 1000.0, 10**6):
        d = decide(
            state, sample(elapsed, remaining=5, status=TransferStatus.POSTCOPY_ACTIVE), config
        )
        assert d.action is Action.CONTINUE
        state = d.state


def test_qemu_reporting_post_copy_counts_as_post_copy() -> None:
    d = decide(start(), sample(10**6, status=TransferStatus.POSTCOPY_ACTIVE), BASE)
    assert d.action is Action.CONTINUE and d.state.mode is MigrationMode.POST_COPY


def test_progress_timeout_counts_from_the_last_decrease() -> None:
    config = conf(progress_timeout=10, completion_timeout_per_gib=0)
    d = decide(start(config), sample(0.0, remaining=1000), config)
    d = decide(d.state, sample(5.0, remaining=900), config)  # progress at 5 s
    d = decide(d.state, sample(14.9, remaining=900), config)
    assert d.action is Action.CONTINUE
    d = decide(d.state, sample(15.0, remaining=950), config)  # went up: still no progress
    assert d.action is Action.CONTINUE  # exactly 10 s is not more than 10 s
    d = decide(d.state, sample(15.1, remaining=950), config)
    assert (d.action, d.reason, d.deadline) == (Action.CANCEL, PROGRESS_TIMEOUT, 15.0)


def test_progress_timeout_zero_disables_it() -> None:
    config = conf(progress_timeout=0, completion_timeout_per_gib=0)
    d = decide(start(config), sample(0.0, remaining=1000), config)
    d = decide(d.state, sample(10**6, remaining=1000), config)
    assert d.action is Action.CONTINUE


def test_rule_order_disruption_comes_before_progress_timeout() -> None:
    # both due: rule 2 wins, so a stuck VM with post-copy allowed switches instead of cancelling
    config = conf(allow_workload_disruption=True, allow_post_copy=True, progress_timeout=10)
    state = replace(start(config), last_remaining=100, last_progress=0.0)
    d = decide(state, sample(200, remaining=100), config)
    assert d.action is Action.START_POST_COPY


def test_rule_order_progress_timeout_comes_before_completion_timeout() -> None:
    config = conf(progress_timeout=10)
    state = replace(start(config), last_remaining=100, last_progress=0.0)
    d = decide(state, sample(200, remaining=100), config)
    assert (d.action, d.reason) == (Action.CANCEL, PROGRESS_TIMEOUT)
