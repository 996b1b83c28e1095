"""The migration monitor's decision for one sample (SPEC §4 "Running") — a pure function.

Given what happened so far (``MonitorState``), a new sample of the transfer, and the effective
configuration, ``decide`` says what to do — continue, switch to post-copy, pause the guest, or
cancel — and returns the next state. The rules, in order:

1. in post-copy: never cancel; wait for the end;
2. elapsed > acceptable completion time and allowWorkloadDisruption: switch to post-copy if
   allowPostCopy, else pause the guest and double the acceptable time;
3. the remaining data has not gone down for progressTimeout seconds: cancel ("progress timeout");
4. elapsed > acceptable completion time: cancel ("completion timeout").

The acceptable completion time is completionTimeoutPerGiB × the data to move in GiB (guest
memory, plus copied disks in a block migration); 0 disables it, as progressTimeout 0 does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from livemig.api.transfer import MigrationMode, TransferStats
from livemig.policy import MigrationConfiguration

GIB = 2**30


class Action(StrEnum):
    CONTINUE = "continue"
    START_POST_COPY = "start-post-copy"
    PAUSE_GUEST = "pause-guest"
    CANCEL = "cancel"


PROGRESS_TIMEOUT = "progress timeout"
COMPLETION_TIMEOUT = "completion timeout"


def acceptable_completion_time(config: MigrationConfiguration, data_bytes: int) -> float:
    """Seconds allowed for the whole migration; 0 means no limit."""
    return config.completion_timeout_per_gib * data_bytes / GIB


@dataclass(frozen=True, slots=True)
class MonitorState:
    """What the monitor remembers between samples."""

    mode: MigrationMode
    acceptable_time: float  # seconds; 0 = no completion timeout
    last_remaining: int | None = None  # remaining bytes at the previous sample
    last_progress: float = 0.0  # elapsed seconds when remaining last went down

    @classmethod
    def start(cls, config: MigrationConfiguration, data_bytes: int) -> MonitorState:
        return cls(MigrationMode.PRE_COPY, acceptable_completion_time(config, data_bytes))


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    state: MonitorState
    reason: str | None = None  # why a cancel or a switch happened
    deadline: float | None = None  # elapsed seconds at which the rule became due


def decide(state: MonitorState, sample: TransferStats, config: MigrationConfiguration) -> Decision:
    """The action for this sample and the state to carry to the next one."""
    elapsed = sample.elapsed
    # Progress bookkeeping: remaining going down between samples is progress.
    if state.last_remaining is None or sample.remaining_bytes < state.last_remaining:
        state = replace(state, last_remaining=sample.remaining_bytes, last_progress=elapsed)
    else:
        state = replace(state, last_remaining=sample.remaining_bytes)

    # 1. Post-copy cannot be undone: the guest's only full copy is split across two hosts.
    if state.mode is MigrationMode.POST_COPY or sample.status.in_postcopy:
        return Decision(Action.CONTINUE, replace(state, mode=MigrationMode.POST_COPY))

    over_time = 0 < state.acceptable_time < elapsed
    # 2. Disrupt the workload instead of cancelling, once.
    if over_time and config.allow_workload_disruption and state.mode is MigrationMode.PRE_COPY:
        if config.allow_post_copy:
            return Decision(
                Action.START_POST_COPY,
                replace(state, mode=MigrationMode.POST_COPY),
                COMPLETION_TIMEOUT,
                state.acceptable_time,
            )
        return Decision(
            Action.PAUSE_GUEST,
            replace(state, mode=MigrationMode.PAUSED, acceptable_time=state.acceptable_time * 2),
            COMPLETION_TIMEOUT,
            state.acceptable_time,
        )
    # 3. No progress for progressTimeout seconds.
    stalled_for = elapsed - state.last_progress
    if 0 < config.progress_timeout < stalled_for:
        return Decision(
            Action.CANCEL, state, PROGRESS_TIMEOUT, state.last_progress + config.progress_timeout
        )
    # 4. Out of time.
    if over_time:
        return Decision(Action.CANCEL, state, COMPLETION_TIMEOUT, state.acceptable_time)
    return Decision(Action.CONTINUE, state)
