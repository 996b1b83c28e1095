"""Run one live migration to its end, deciding on the way (SPEC §4 "Running").

The runner sets the capabilities and parameters from the effective configuration, starts the
transfer, samples it at least every ``sample_interval`` seconds (and whenever the hypervisor
reports a migration event, and exactly when a timeout falls due), applies ``convergence.decide``
and ends with an outcome and the whole statistics history. It talks to the hypervisor only
through the ``VM`` protocol and to time only through a ``Clock``, so the planner can run the
very same code against a model in virtual time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

from livemig.api.lifecycle import USER_CANCEL
from livemig.api.quantity import short_bytes
from livemig.clock import Clock
from livemig.convergence import Action, Decision, MonitorState, decide
from livemig.errors import CancelRefused, HypervisorError
from livemig.hypervisor import VM, MigrationMode, MigrationParams, TransferStats, TransferStatus
from livemig.policy import MigrationConfiguration

__all__ = ["USER_CANCEL", "MigrationResult", "MigrationRunner", "Outcome", "params_for"]

log = logging.getLogger(__name__)

TARGET_SETTLE_TIMEOUT = 10.0
#: Seconds a post-copy migration may stay paused by a broken link before it is given up.
POSTCOPY_GIVE_UP = 60.0
POSTCOPY_LOST = "post-copy interrupted: target lost"
#: Called before the hypervisor is told to switch mode: True to go on, False for "do not" (the
#: migration was cancelled meanwhile: the runner cancels instead), None for "cannot say now"
#: (the record could not be written: the runner decides again on the next sample).
#: Called with the new mode and why, in words, before QEMU is told to switch.
SwitchHook = Callable[[MigrationMode, str], Awaitable[bool | None]]


class Recovery(Protocol):
    """How the source meets the target again after a post-copy link broke: the target offers
    addresses to reconnect to (numbered), the source says when one is spent (its attempts at
    it failed or hung), and the target then offers a new one."""

    async def offer(self) -> tuple[int, str] | None:
        """The target's latest offer (number, address); None if it made none yet."""
        ...

    async def spent(self, number: int) -> None:
        """Offer ``number`` did not work: ask the target for a new one."""
        ...


#: Seconds between the source's attempts to reconnect a paused post-copy migration, and how
#: long a reconnection may hang (QEMU 7.2 can stay in postcopy-recover for good when the new
#: link breaks during its handshake) before it is paused again to be retried.
RECOVERY_RETRY, RECOVERY_HANG = 1.0, 5.0
#: Reconnection attempts per offer before the source asks the target for a new one.
RECOVERY_ATTEMPTS = 3
#: The link is broken (post-copy waits): QEMU's states while it is down or being reconnected.
LINK_DOWN = frozenset({TransferStatus.POSTCOPY_PAUSED, TransferStatus.POSTCOPY_RECOVER})


class Outcome(StrEnum):
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True, slots=True)
class ActionTaken:
    action: Action
    reason: str | None
    due_at: float | None  # elapsed seconds when the rule became due
    sent_at: float  # elapsed seconds when the command was sent

    @property
    def latency(self) -> float | None:
        return None if self.due_at is None else self.sent_at - self.due_at


@dataclass(frozen=True, slots=True)
class MigrationResult:
    outcome: Outcome
    mode: MigrationMode
    failure_reason: str | None
    duration: float  # seconds from the migrate command to the end
    downtime_ms: int | None
    history: tuple[TransferStats, ...]
    actions: tuple[ActionTaken, ...]
    #: The guest is lost: its state was split (post-copy) or its source QEMU died.
    guest_lost: bool = False

    @property
    def succeeded(self) -> bool:
        return self.outcome is Outcome.SUCCEEDED


def params_for(config: MigrationConfiguration) -> MigrationParams:
    """The hypervisor parameters of the effective configuration."""
    return MigrationParams(
        bandwidth=config.bandwidth_per_migration,
        auto_converge=config.allow_auto_converge,
        post_copy=config.allow_post_copy,
        downtime_limit_ms=config.max_downtime_ms,
    )


class MigrationRunner:
    """One migration from ``source`` to ``target_uri``; ``run`` once, ``cancel`` any time."""

    def __init__(
        self,
        source: VM,
        target_uri: str,
        config: MigrationConfiguration,
        data_bytes: int,
        clock: Clock,
        target: VM | None = None,
        sample_interval: float = 0.25,
        on_sample: Callable[[TransferStats, MonitorState], None] | None = None,
        on_switch: SwitchHook | None = None,
        postcopy_give_up: float = POSTCOPY_GIVE_UP,
        recovery: Recovery | None = None,
    ) -> None:
        self.source = source
        self.target_uri = target_uri
        self.config = config
        self.clock = clock
        self.target = target
        self.sample_interval = sample_interval
        self.on_sample = on_sample
        self.on_switch = on_switch
        self.postcopy_give_up = postcopy_give_up
        self.recovery = recovery
        #: How many times a broken post-copy link was reconnected.
        self.recovered = 0
        self._target_lost = False
        self._link_down_since: float | None = None  # post-copy waiting for its link
        self._recovering_since: float | None = None
        self._next_reconnect = 0.0
        self._attempts: dict[int, int] = {}  # offer number → reconnection attempts
        self.state = MonitorState.start(config, data_bytes)
        self._cancel_requested: str | None = None
        self._wake = asyncio.Event()
        self._paused_by_us = False
        self._cancel_reason: str | None = None
        self._start = 0.0

    @property
    def in_post_copy(self) -> bool:
        return self.state.mode is MigrationMode.POST_COPY

    def target_lost(self) -> None:
        """The target's QEMU is known to be dead: a post-copy waiting for its link back has
        nothing to wait for (the runner still asks the source's QEMU what it holds)."""
        self._target_lost = True
        self._wake.set()

    def cancel(self, reason: str | None = None) -> None:
        """Ask for the migration to be aborted (``reason`` is recorded; by default a user's
        cancel); the VM keeps running on the source."""
        if self.in_post_copy:
            raise CancelRefused(
                f"{self.source.name}: the migration is in post-copy and cannot be cancelled "
                "(the guest's memory is split between source and target); wait for it to end"
            )
        self._cancel_requested = reason or USER_CANCEL
        self._wake.set()

    async def _target_takes_over(self, paused_by_us: bool) -> None:
        """Wait until the target has loaded the last state; resume it if we paused it."""
        assert self.target is not None
        deadline = self.clock.now() + TARGET_SETTLE_TIMEOUT
        # The source reports "completed" a moment before the target leaves "inmigrate".
        while await self.target.run_state() == "inmigrate" and self.clock.now() < deadline:
            await self.clock.sleep(0.005)
        if paused_by_us:
            await self.target.resume()  # it arrived paused, as it left

    async def _until_something_happens(self, within: float) -> None:
        """A migration event, a cancel request, or ``within`` seconds, whichever is first."""
        self._wake.clear()
        waiters = [
            asyncio.ensure_future(self.source.wait_change(self.clock, within)),
            asyncio.ensure_future(self._wake.wait()),
        ]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    def _next_due(self, elapsed: float) -> float:
        """Seconds until the next timeout falls due (so decisions are not late by a tick)."""
        dues = []
        if self.state.acceptable_time > 0 and self.state.mode is not MigrationMode.POST_COPY:
            dues.append(self.state.acceptable_time)
        if self.config.progress_timeout > 0 and self.state.mode is not MigrationMode.POST_COPY:
            dues.append(self.state.last_progress + self.config.progress_timeout)
        wait = self.sample_interval
        for due in dues:
            # A rule is due once elapsed is strictly past it: a sample landing exactly on the
            # due time must be followed by one just after it, not a whole interval later.
            if due >= elapsed:
                wait = min(wait, due - elapsed + 0.001)
        return wait

    async def run(self, adopt: MigrationMode | None = None) -> MigrationResult:
        """Start the migration and see it to its end; with ``adopt``, take over one QEMU is
        already running (an agent restarted) in that mode."""
        history: list[TransferStats] = []
        actions: list[ActionTaken] = []
        self._start = self.clock.now()
        if adopt is not None:
            self.state = replace(self.state, mode=adopt)
            self._paused_by_us = adopt is MigrationMode.PAUSED
        else:
            try:
                await self.source.start_migration(self.target_uri, params_for(self.config))
            except HypervisorError as exc:
                if not self.source.alive():
                    return self._source_died(history, actions)
                return self._result(Outcome.FAILED, str(exc), None, history, actions)
        while True:
            try:
                sample = await self.source.stats()
            except HypervisorError:
                if not self.source.alive():
                    return self._source_died(history, actions)
                raise
            history.append(sample)
            if sample.status.finished:
                break
            if await self._tend_link(sample):
                return self._result(
                    Outcome.FAILED, POSTCOPY_LOST, None, history, actions, guest_lost=True
                )
            if self.on_sample:
                self.on_sample(sample, self.state)
            if (taken := await self._act(sample)) is not None:
                actions.append(taken)
            wait = self._next_due(sample.elapsed)
            if self._link_down_since is not None:
                give_up_at = self._link_down_since + self.postcopy_give_up
                wait = min(wait, give_up_at - self.clock.now() + 0.001)
            await self._until_something_happens(wait)
        if sample.status is TransferStatus.COMPLETED:
            if self.target is not None:
                await self._target_takes_over(self._paused_by_us)
            return self._result(Outcome.SUCCEEDED, None, sample.downtime_ms, history, actions)
        if self.state.mode is MigrationMode.POST_COPY:
            if await self._source_runs_on():
                # The switch itself failed, before the target ran: QEMU kept the source whole.
                reason = f"the switch to post-copy failed: {_in_words(sample)}"
                return self._result(Outcome.FAILED, reason, None, history, actions)
            return self._result(
                Outcome.FAILED, POSTCOPY_LOST, None, history, actions, guest_lost=True
            )
        if self._paused_by_us:
            await self.source.resume()  # the VM goes on running on the source, untouched
        reason = self._cancel_reason or _in_words(sample)
        return self._result(Outcome.FAILED, reason, sample.downtime_ms, history, actions)

    async def _source_runs_on(self) -> bool:
        """Whether the source guest still runs (QEMU's word), so nothing of it was handed over."""
        try:
            return await self.source.run_state() == "running"
        except HypervisorError:
            return False

    async def _tend_link(self, sample: TransferStats) -> bool:
        """Look after a post-copy link that broke: reconnect it to the target's offer, unstick
        a reconnection that hangs; True once it has been down for the give-up time."""
        now = self.clock.now()
        if sample.status in LINK_DOWN:
            if self._link_down_since is None:
                self._link_down_since = now
            if self._target_lost or now - self._link_down_since >= self.postcopy_give_up:
                return True
        elif self._link_down_since is not None:
            self._link_down_since = None
            self.recovered += 1
        if sample.status is TransferStatus.POSTCOPY_RECOVER:
            if self._recovering_since is None:
                self._recovering_since = now
            elif now - self._recovering_since >= RECOVERY_HANG:
                # QEMU 7.2 can hang here when the new link broke during its handshake: pause
                # it again and have the target offer a fresh address.
                self._recovering_since = None
                with contextlib.suppress(HypervisorError):
                    await self.source.pause_migration()
                for number in self._attempts:
                    self._attempts[number] = RECOVERY_ATTEMPTS
        else:
            self._recovering_since = None
        ready = self.recovery is not None and now >= self._next_reconnect
        if sample.status is TransferStatus.POSTCOPY_PAUSED and self.recovery and ready:
            self._next_reconnect = now + RECOVERY_RETRY
            await self._reconnect(self.recovery)
        return False

    async def _reconnect(self, recovery: Recovery) -> None:
        """Try once to resume a paused post-copy at the target's latest offer, or say the
        offer is spent."""
        offer = await recovery.offer()
        if offer is None:
            return
        number, uri = offer
        tried = self._attempts.get(number, 0)
        if tried >= RECOVERY_ATTEMPTS:
            await recovery.spent(number)
            return
        self._attempts[number] = tried + 1
        try:
            await self.source.resume_migration(uri)
        except HypervisorError as exc:  # the link is still down: the next try may work
            log.info("%s: post-copy recovery via %s failed: %s", self.source.name, uri, exc)

    def _source_died(
        self, history: list[TransferStats], actions: list[ActionTaken]
    ) -> MigrationResult:
        where = "post-copy interrupted: " if self.state.mode is MigrationMode.POST_COPY else ""
        return self._result(
            Outcome.FAILED,
            f"{where}the source QEMU of {self.source.name} exited during the migration",
            None,
            history,
            actions,
            guest_lost=True,
        )

    async def _act(self, sample: TransferStats) -> ActionTaken | None:
        """Apply a user cancel or the monitor's decision for this sample."""
        if self._cancel_reason is not None or sample.status is TransferStatus.CANCELLING:
            return None  # already on the way out
        if self._cancel_requested and not sample.status.in_postcopy:
            self._cancel_reason = self._cancel_requested
            await self.source.cancel_migration()
            return ActionTaken(
                Action.CANCEL, self._cancel_reason, None, self.clock.now() - self._start
            )
        decision = decide(self.state, sample, self.config)
        switching = decision.action in (Action.START_POST_COPY, Action.PAUSE_GUEST)
        if switching and self.on_switch is not None:
            # Recorded first, so that a cancel either lands before (and wins) or is refused.
            recorded = await self.on_switch(decision.state.mode, _switch_words(decision, sample))
            if recorded is None:
                return None  # not recorded (API unreachable): decide again on the next sample
            if not recorded:
                self._cancel_reason = USER_CANCEL
                await self.source.cancel_migration()
                return ActionTaken(Action.CANCEL, USER_CANCEL, None, self.clock.now() - self._start)
        self.state = decision.state
        if decision.action is Action.CONTINUE:
            return None
        if decision.action is Action.START_POST_COPY:
            await self.source.start_postcopy()
        elif decision.action is Action.PAUSE_GUEST:
            await self.source.pause()
            self._paused_by_us = True
        else:
            self._cancel_reason = decision.reason
            await self.source.cancel_migration()
        return ActionTaken(
            decision.action, decision.reason, decision.deadline, self.clock.now() - self._start
        )

    def _result(
        self,
        outcome: Outcome,
        reason: str | None,
        downtime_ms: int | None,
        history: list[TransferStats],
        actions: list[ActionTaken],
        guest_lost: bool = False,
    ) -> MigrationResult:
        return MigrationResult(
            outcome,
            self.state.mode,
            reason,
            self.clock.now() - self._start,
            downtime_ms,
            tuple(history),
            tuple(actions),
            guest_lost,
        )


def _in_words(sample: TransferStats) -> str:
    """Why QEMU ended a migration, for a person: what happened, then QEMU's own text."""
    if sample.status is TransferStatus.CANCELLED:
        return "the migration was cancelled; the VM runs on the source"
    detail = f" (QEMU: {sample.error})" if sample.error else ""
    return f"the migration stream to the target broke{detail}; the VM runs on the source"


def _switch_words(decision: Decision, sample: TransferStats) -> str:
    """Why the migration switches, as the operator reads it in the event: "completion timeout
    160 s passed at 64Mi/s (the guest dirties 96Mi/s; 1.2Gi left): switched to post-copy"."""
    rate = short_bytes(int(sample.transfer_rate))
    dirty = short_bytes(int(sample.dirty_rate))
    left = short_bytes(sample.remaining_bytes)
    head = (
        f"{decision.reason or 'completion timeout'} {decision.deadline or sample.elapsed:.0f} s "
        f"passed at {rate}/s (the guest dirties {dirty}/s; {left} left)"
    )
    if decision.action is Action.START_POST_COPY:
        return f"{head}: switched to post-copy; the guest now runs on the target"
    return (
        f"{head}: paused the guest so the copy converges; "
        f"the limit is now {decision.state.acceptable_time:.0f} s"
    )
