"""The migration runner's decisions in virtual time, against a model VM (tests/fakes.py): a
150 s completion timeout is honoured to the millisecond of cluster time in a few milliseconds
of wall time, and the switch to post-copy is recorded before QEMU is told, so a cancel can
never race it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from livemig.clock import LoopClock
from livemig.convergence import COMPLETION_TIMEOUT, PROGRESS_TIMEOUT, Action
from livemig.errors import CancelRefused
from livemig.hypervisor import MigrationMode
from livemig.migration import POSTCOPY_LOST, USER_CANCEL, MigrationResult, MigrationRunner, Outcome
from livemig.policy import ClusterConfig, MigrationConfiguration, effective_configuration

from ..fakes import FakeVM, MiB, run_virtual

GIB = 1024 * MiB


def config(**changes: object) -> MigrationConfiguration:
    return replace(effective_configuration(ClusterConfig()), **changes)  # type: ignore[arg-type]


HEAVY = config(
    bandwidth_per_migration=64 * MiB,
    completion_timeout_per_gib=150,
    allow_post_copy=True,
    allow_workload_disruption=True,
    progress_timeout=0,
)


def heavy_vm() -> FakeVM:
    """1 GiB dirtied at 128 MiB/s: pre-copy at 64 MiB/s never ends on its own."""
    return FakeVM("heavy", GIB, dirty_rate=128 * MiB)


def sent(vm: FakeVM, command: str) -> list[float]:
    return [t for t, c in vm.commands if c == command]


def test_a_150_second_completion_timeout_switches_to_post_copy_on_time() -> None:
    async def go() -> tuple[MigrationResult, FakeVM, float]:
        vm = heavy_vm()
        runner = MigrationRunner(vm, "tcp:target:1", HEAVY, GIB, LoopClock())
        return await runner.run(), vm, asyncio.get_running_loop().time()

    wall = time.monotonic()
    result, vm, ended = run_virtual(go())
    wall = time.monotonic() - wall
    assert result.outcome is Outcome.SUCCEEDED and result.mode is MigrationMode.POST_COPY
    (switch,) = sent(vm, "migrate-start-postcopy")
    assert 150.0 <= switch <= 150.01  # due at 150 s, sent within 10 ms of cluster time
    (action,) = result.actions
    assert action.reason == COMPLETION_TIMEOUT and action.latency is not None
    assert action.latency < 0.01
    assert ended > 160  # the remaining GiB then took 16 s at 64 MiB/s
    assert wall < 30  # virtual time: a real run would take 166 s


def test_a_cancel_that_lands_before_the_switch_is_recorded_wins() -> None:
    async def go() -> tuple[MigrationResult, FakeVM]:
        vm = heavy_vm()

        async def cancelled_meanwhile(mode: MigrationMode, why: str) -> bool:
            return False  # the API says: the migration is gone (deleted by a cancel)

        runner = MigrationRunner(
            vm, "tcp:target:1", HEAVY, GIB, LoopClock(), on_switch=cancelled_meanwhile
        )
        return await runner.run(), vm

    result, vm = run_virtual(go())
    assert result.outcome is Outcome.FAILED and result.failure_reason == USER_CANCEL
    assert sent(vm, "migrate-start-postcopy") == []  # QEMU was never told to switch
    assert sent(vm, "migrate_cancel") and vm._running  # the VM runs on, on the source
    assert result.mode is MigrationMode.PRE_COPY


def test_once_post_copy_is_recorded_a_cancel_is_refused_and_it_completes() -> None:
    async def go() -> tuple[MigrationResult, FakeVM, list[str]]:
        vm = heavy_vm()
        recorded: list[MigrationMode] = []
        whys: list[str] = []
        refusals: list[str] = []

        async def record(mode: MigrationMode, why: str) -> bool:
            recorded.append(mode)
            whys.append(why)
            assert sent(vm, "migrate-start-postcopy") == []  # recorded *before* the switch
            return True

        runner = MigrationRunner(vm, "tcp:target:1", HEAVY, GIB, LoopClock(), on_switch=record)
        task = asyncio.create_task(runner.run())
        await asyncio.sleep(151)  # the switch is due at 150 s
        assert runner.in_post_copy
        try:
            runner.cancel()
        except CancelRefused as exc:
            refusals.append(str(exc))
        assert recorded == [MigrationMode.POST_COPY]
        # Why, in the words an operator reads in the SwitchedToPostCopy event.
        assert whys[0].startswith("completion timeout 150 s passed at 64Mi/s")
        return await task, vm, refusals

    result, vm, refusals = run_virtual(go())
    assert result.succeeded and result.mode is MigrationMode.POST_COPY
    assert refusals and "post-copy" in refusals[0]
    assert sent(vm, "migrate_cancel") == []


def test_an_unreachable_api_delays_the_switch_and_never_switches_unrecorded() -> None:
    async def go() -> tuple[MigrationResult, FakeVM]:
        vm = heavy_vm()
        answers: list[bool | None] = [None, None, None, True]

        async def flaky(mode: MigrationMode, why: str) -> bool | None:
            return answers.pop(0)

        runner = MigrationRunner(vm, "tcp:target:1", HEAVY, GIB, LoopClock(), on_switch=flaky)
        return await runner.run(), vm

    result, vm = run_virtual(go())
    (switch,) = sent(vm, "migrate-start-postcopy")
    assert switch > 150.0  # three samples later than due, but only once recorded
    assert result.succeeded and sent(vm, "migrate_cancel") == []


def test_no_progress_for_the_progress_timeout_cancels_at_that_moment() -> None:
    async def go() -> tuple[MigrationResult, FakeVM]:
        vm = FakeVM("stuck", GIB, dirty_rate=64 * MiB)  # dirtied exactly as fast as sent
        cfg = replace(HEAVY, progress_timeout=150, completion_timeout_per_gib=0)
        return await MigrationRunner(vm, "tcp:target:1", cfg, GIB, LoopClock()).run(), vm

    result, vm = run_virtual(go())
    assert result.outcome is Outcome.FAILED and result.failure_reason == PROGRESS_TIMEOUT
    (cancel,) = sent(vm, "migrate_cancel")
    assert 150.0 <= cancel <= 150.01
    assert result.history[-2].processed_bytes > 0  # the figures before QEMU's zeros exist


def test_without_post_copy_the_guest_is_paused_and_the_time_doubled() -> None:
    async def go() -> tuple[MigrationResult, FakeVM]:
        vm = heavy_vm()
        cfg = replace(HEAVY, allow_post_copy=False)
        return await MigrationRunner(vm, "tcp:target:1", cfg, GIB, LoopClock()).run(), vm

    result, vm = run_virtual(go())
    (pause,) = sent(vm, "stop")
    assert 150.0 <= pause <= 150.01
    assert result.succeeded and result.mode is MigrationMode.PAUSED
    assert [a.action for a in result.actions] == [Action.PAUSE_GUEST]


def test_a_source_that_dies_mid_migration_is_reported_in_words() -> None:
    async def go() -> MigrationResult:
        vm = heavy_vm()
        runner = MigrationRunner(vm, "tcp:target:1", HEAVY, GIB, LoopClock())
        task = asyncio.create_task(runner.run())
        await asyncio.sleep(30)
        vm.die()
        return await task

    result = run_virtual(go())
    assert result.outcome is Outcome.FAILED and result.guest_lost
    assert result.failure_reason == "the source QEMU of heavy exited during the migration"


def test_a_post_copy_cut_off_for_longer_than_the_give_up_time_is_lost_honestly() -> None:
    async def go() -> tuple[MigrationResult, float]:
        vm = heavy_vm()
        runner = MigrationRunner(vm, "tcp:target:1", HEAVY, GIB, LoopClock(), postcopy_give_up=45.0)
        task = asyncio.create_task(runner.run())
        await asyncio.sleep(151)
        assert runner.in_post_copy
        vm.break_link()
        cut = asyncio.get_running_loop().time()
        result = await task
        return result, asyncio.get_running_loop().time() - cut

    result, waited = run_virtual(go())
    assert result.outcome is Outcome.FAILED and result.guest_lost
    assert result.failure_reason == POSTCOPY_LOST
    assert 45.0 <= waited <= 45.3


def test_a_post_copy_link_that_comes_back_is_resumed_and_completes() -> None:
    async def go() -> tuple[MigrationResult, FakeVM, MigrationRunner, Target]:
        vm = heavy_vm()
        target = Target()
        runner = MigrationRunner(
            vm, "tcp:target:1", HEAVY, GIB, LoopClock(), postcopy_give_up=45.0, recovery=target
        )
        task = asyncio.create_task(runner.run())
        await asyncio.sleep(151)
        vm.break_link()
        await asyncio.sleep(5)
        target.offers.append("tcp:target:2")  # the target listens again; the link is still down
        await asyncio.sleep(10)
        vm.mend_link()
        return await task, vm, runner, target

    result, vm, runner, target = run_virtual(go())
    assert result.succeeded and result.mode is MigrationMode.POST_COPY
    tries = sent(vm, "migrate resume")
    # Each offer is tried a few times, then declared spent; the target offers anew each time.
    assert len(tries) >= 6 and target.spent_numbers[:2] == [1, 2]
    assert runner.recovered == 1


class Target:
    """The target's side of the recovery protocol: a new offer whenever one is spent."""

    def __init__(self) -> None:
        self.offers: list[str] = []
        self.spent_numbers: list[int] = []

    async def offer(self) -> tuple[int, str] | None:
        return (len(self.offers), self.offers[-1]) if self.offers else None

    async def spent(self, number: int) -> None:
        self.spent_numbers.append(number)
        self.offers.append(f"tcp:target:{100 + number}")
