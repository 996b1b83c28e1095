"""Live migration between real QEMU processes, with KubeVirt's convergence rules.

Every test uses 128 MiB guests of the built-in test guest, small timeouts (seconds) and checks
the outcome, the mode, and the guest's memory pattern (0 bad pages) on the VM that runs after.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from livemig.clock import RealClock
from livemig.convergence import COMPLETION_TIMEOUT, PROGRESS_TIMEOUT, Action
from livemig.errors import CancelRefused
from livemig.hypervisor import MigrationMode, VMSpec, testguest
from livemig.migration import USER_CANCEL, MigrationResult, MigrationRunner, Outcome
from livemig.policy import MigrationConfiguration

from .conftest import MiB, configuration, lab, requires_qemu

pytestmark = requires_qemu
MEMORY = 128 * MiB
clock = RealClock()


def guest(name: str, working_set: int = 64 * MiB, dirty_rate: int = 0) -> VMSpec:
    return VMSpec(name, memory=MEMORY, working_set=working_set, dirty_rate=dirty_rate)


def timeout_for(seconds: float) -> int:
    """completionTimeoutPerGiB that gives a 128 MiB guest ``seconds`` to finish."""
    return round(seconds * 2**30 / MEMORY)


async def migrate(
    folder: Path, spec: VMSpec, config: MigrationConfiguration
) -> tuple[MigrationResult, bool, bool, int, int]:
    """Run one migration; return (result, source running, target running, bad pages on the
    VM that runs afterwards, its page count)."""
    async with lab(folder) as the_lab:
        source, target = await the_lab.pair(spec, config)
        assert target.listen_uri is not None
        runner = MigrationRunner(source, target.listen_uri, config, MEMORY, clock, target=target)
        result = await runner.run()
        source_running = await source.is_running()
        target_running = await target.is_running() if result.succeeded else False
        survivor = target if result.succeeded else source
        check = await survivor.check_memory()
        return result, source_running, target_running, check.bad_pages, check.pages


def test_idle_vm_migrates_with_no_bandwidth_limit(tmp_path: Path) -> None:
    result, src, dst, bad, pages = asyncio.run(
        migrate(tmp_path, guest("idle"), configuration(bandwidth_per_migration=0))
    )
    assert result.outcome is Outcome.SUCCEEDED, result.failure_reason
    assert result.mode is MigrationMode.PRE_COPY
    assert (src, dst) == (False, True)  # runs on the target now, not on the source
    assert (bad, pages) == (0, 16384)
    assert result.duration < 10


def test_dirty_rate_below_the_cap_converges(tmp_path: Path) -> None:
    spec = guest("busy", dirty_rate=4 * MiB)
    result, src, dst, bad, _ = asyncio.run(
        migrate(tmp_path, spec, configuration(bandwidth_per_migration=64 * MiB))
    )
    assert result.outcome is Outcome.SUCCEEDED, result.failure_reason
    assert result.mode is MigrationMode.PRE_COPY
    assert max(s.iteration for s in result.history) >= 2  # it had dirty pages to resend
    assert (src, dst, bad) == (False, True, 0)


def test_bandwidth_cap_holds(tmp_path: Path) -> None:
    cap = 16 * MiB
    result, _, _, bad, _ = asyncio.run(
        migrate(
            tmp_path,
            guest("capped", working_set=48 * MiB),
            configuration(bandwidth_per_migration=cap),
        )
    )
    assert result.outcome is Outcome.SUCCEEDED, result.failure_reason
    active = [s for s in result.history if s.status.value == "active" and s.processed_bytes]
    first, last = active[0], active[-1]
    rate = (last.processed_bytes - first.processed_bytes) / (last.elapsed - first.elapsed)
    assert 0.9 * cap <= rate <= 1.1 * cap, f"measured {rate / MiB:.1f} MiB/s"
    assert bad == 0


# A guest dirtying 32 MiB/s against an 8 MiB/s cap never converges in pre-copy: each pass over
# its 16 MiB working set takes 2 s, while the guest dirties all of it again. Paused, the last
# 16 MiB take 2 s, well inside the doubled completion time.
HEAVY = guest("heavy", working_set=16 * MiB, dirty_rate=32 * MiB)
SLOW = {"bandwidth_per_migration": 8 * MiB, "completion_timeout_per_gib": timeout_for(3)}


def test_non_converging_vm_is_cancelled_at_the_completion_timeout(tmp_path: Path) -> None:
    result, src, _, bad, _ = asyncio.run(migrate(tmp_path, HEAVY, configuration(**SLOW)))
    assert result.outcome is Outcome.FAILED
    assert result.failure_reason == COMPLETION_TIMEOUT
    assert result.mode is MigrationMode.PRE_COPY
    assert [a.action for a in result.actions] == [Action.CANCEL]
    assert 3 <= result.actions[0].sent_at < 4
    assert src is True and bad == 0  # still running on the source, memory intact


def test_non_converging_vm_switches_to_post_copy_and_completes(tmp_path: Path) -> None:
    config = configuration(**SLOW, allow_post_copy=True, allow_workload_disruption=True)
    result, src, dst, bad, _ = asyncio.run(migrate(tmp_path, HEAVY, config))
    assert result.outcome is Outcome.SUCCEEDED, result.failure_reason
    assert result.mode is MigrationMode.POST_COPY
    assert [a.action for a in result.actions] == [Action.START_POST_COPY]
    assert any(s.status.in_postcopy for s in result.history)
    assert (src, dst, bad) == (False, True, 0)


def test_workload_disruption_without_post_copy_pauses_and_resumes_on_target(
    tmp_path: Path,
) -> None:
    config = configuration(**SLOW, allow_post_copy=False, allow_workload_disruption=True)
    result, src, dst, bad, _ = asyncio.run(migrate(tmp_path, HEAVY, config))
    assert result.outcome is Outcome.SUCCEEDED, result.failure_reason
    assert result.mode is MigrationMode.PAUSED
    assert [a.action for a in result.actions] == [Action.PAUSE_GUEST]
    assert (src, dst, bad) == (False, True, 0)  # running again, on the target


async def _stalled(folder: Path) -> tuple[MigrationResult, bool, int]:
    config = configuration(
        bandwidth_per_migration=8 * MiB, completion_timeout_per_gib=0, progress_timeout=2
    )
    async with lab(folder) as the_lab:
        source, target = await the_lab.pair(guest("stall", dirty_rate=MiB), config)
        assert target.listen_uri is not None and target.pid is not None
        runner = MigrationRunner(source, target.listen_uri, config, MEMORY, clock)
        task = asyncio.create_task(runner.run())
        await clock.sleep(1.0)
        os.kill(target.pid, signal.SIGSTOP)  # the target stops reading
        result = await task
        return result, await source.is_running(), (await source.check_memory()).bad_pages


def test_stalled_transfer_is_cancelled_by_progress_timeout(tmp_path: Path) -> None:
    result, src, bad = asyncio.run(_stalled(tmp_path))
    assert result.outcome is Outcome.FAILED
    assert result.failure_reason == PROGRESS_TIMEOUT
    assert (src, bad) == (True, 0)


async def _user_cancel(folder: Path) -> tuple[MigrationResult, bool, int]:
    config = configuration(bandwidth_per_migration=8 * MiB)
    async with lab(folder) as the_lab:
        source, target = await the_lab.pair(guest("cancel"), config)
        assert target.listen_uri is not None
        runner = MigrationRunner(source, target.listen_uri, config, MEMORY, clock)
        task = asyncio.create_task(runner.run())
        await clock.sleep(1.0)
        runner.cancel()
        result = await task
        return result, await source.is_running(), (await source.check_memory()).bad_pages


def test_user_cancel_in_pre_copy_leaves_the_vm_on_the_source(tmp_path: Path) -> None:
    result, src, bad = asyncio.run(_user_cancel(tmp_path))
    assert result.outcome is Outcome.FAILED
    assert result.failure_reason == USER_CANCEL
    assert (src, bad) == (True, 0)


async def _cancel_in_post_copy(folder: Path) -> tuple[MigrationResult, list[str]]:
    config = configuration(**SLOW, allow_post_copy=True, allow_workload_disruption=True)
    refused: list[str] = []
    async with lab(folder) as the_lab:
        source, target = await the_lab.pair(HEAVY, config)
        assert target.listen_uri is not None
        runner = MigrationRunner(source, target.listen_uri, config, MEMORY, clock, target=target)
        task = asyncio.create_task(runner.run())
        while not task.done():
            if runner.in_post_copy:
                try:
                    runner.cancel()
                except CancelRefused as exc:
                    refused.append(str(exc))
                break
            await clock.sleep(0.005)
        return await task, refused


def test_cancel_in_post_copy_is_refused(tmp_path: Path) -> None:
    result, refused = asyncio.run(_cancel_in_post_copy(tmp_path))
    assert refused and "post-copy" in refused[0]
    assert result.outcome is Outcome.SUCCEEDED  # the refused cancel changed nothing


async def _target_killed(folder: Path) -> tuple[MigrationResult, bool, int]:
    config = configuration(bandwidth_per_migration=8 * MiB)
    async with lab(folder) as the_lab:
        source, target = await the_lab.pair(guest("orphan", dirty_rate=MiB), config)
        assert target.listen_uri is not None
        runner = MigrationRunner(source, target.listen_uri, config, MEMORY, clock)
        task = asyncio.create_task(runner.run())
        await clock.sleep(1.0)
        target.kill()
        result = await task
        return result, await source.is_running(), (await source.check_memory()).bad_pages


def test_killing_the_target_in_pre_copy_fails_and_the_source_keeps_running(
    tmp_path: Path,
) -> None:
    result, src, bad = asyncio.run(_target_killed(tmp_path))
    assert result.outcome is Outcome.FAILED
    assert result.failure_reason  # QEMU's own error text
    assert (src, bad) == (True, 0)


async def _dirty_rate(folder: Path) -> float:
    async with lab(folder) as the_lab:
        vm = await the_lab.vm(guest("paced", dirty_rate=8 * MiB))
        return await vm.measure_dirty_rate(1.0)


def test_the_guest_dirties_memory_at_the_rate_it_was_given(tmp_path: Path) -> None:
    rate = asyncio.run(_dirty_rate(tmp_path))
    # The guest paces itself on 1000 Hz timer ticks; under TCG on a busy host some ticks
    # coalesce, so it may fall a little short, never over.
    assert 0.8 * 8 * MiB <= rate <= 1.1 * 8 * MiB, f"{rate / MiB:.2f} MiB/s"


async def _rate_change(folder: Path) -> list[str]:
    async with lab(folder) as the_lab:
        vm = await the_lab.vm(guest("tunable"))
        await vm.set_dirty_rate(20 * MiB)
        await vm.set_working_set(8 * MiB)
        check = await vm.check_memory()
        assert check.ok and check.pages == 2048
        return vm.console


def test_the_guest_takes_rate_and_working_set_changes_on_its_console(tmp_path: Path) -> None:
    console = asyncio.run(_rate_change(tmp_path))
    assert console[0] == "LIVEMIG R0 W16384"
    assert "R5120 W16384" in console and "R5120 W2048" in console


def test_a_working_set_too_big_for_memory_is_refused(tmp_path: Path) -> None:
    from livemig.errors import HypervisorError

    async def go() -> None:
        async with lab(tmp_path) as the_lab:
            await the_lab.vm(guest("huge", working_set=MEMORY))

    with pytest.raises(HypervisorError, match="does not fit"):
        asyncio.run(go())


async def _disk_image(folder: Path) -> str:
    image = folder / "disk.img"
    image.write_bytes(testguest.image(working_set=MiB, dirty_rate=0))
    os.truncate(image, testguest.IMAGE_SIZE)
    async with lab(folder) as the_lab:
        vm = await the_lab.vm(VMSpec("from-disk", memory=64 * MiB, disk=str(image)))
        return await vm.wait_console("READY")


def test_a_vm_boots_a_disk_image(tmp_path: Path) -> None:
    assert asyncio.run(_disk_image(tmp_path)) == "READY"


# A guest dirtying 24 MiB/s of a 32 MiB working set against a 32 MiB/s cap: each pass resends
# what the guest dirtied during the last one. QEMU switches over once what is left fits in
# downtime-limit at the current bandwidth: 2,000 ms holds ~64 MiB, so it switches right after
# the first passes; 1 ms holds ~32 KiB, so pre-copy goes on until the passes are that small.
# (Measured here: 3 passes in ~1 s against 14 in ~3.8 s.)
DOWNTIME_GUEST = guest("downtime", working_set=32 * MiB, dirty_rate=24 * MiB)
DOWNTIME = {"bandwidth_per_migration": 32 * MiB, "completion_timeout_per_gib": timeout_for(30)}


def test_max_downtime_decides_when_pre_copy_switches_over(tmp_path: Path) -> None:
    runs = {}
    for limit in (2000, 1):
        result, src, dst, bad, _ = asyncio.run(
            migrate(
                tmp_path / str(limit),
                DOWNTIME_GUEST,
                configuration(**DOWNTIME, max_downtime_ms=limit),
            )
        )
        assert result.outcome is Outcome.SUCCEEDED, result.failure_reason
        assert (src, dst, bad) == (False, True, 0)
        runs[limit] = (max(s.iteration for s in result.history), result.duration)
    (lax_passes, lax_time), (strict_passes, strict_time) = runs[2000], runs[1]
    assert strict_passes >= lax_passes + 3, runs  # it kept copying to get under 1 ms
    assert strict_time > lax_time, runs
