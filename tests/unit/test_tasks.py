"""Stopping tasks whose cancellation gets absorbed (as httpx's shielded clean-up can do)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from livemig.tasks import cancel_and_wait


def test_a_task_that_absorbs_a_cancel_is_cancelled_again_until_it_ends() -> None:
    async def go() -> int:
        absorbed = 0

        async def stubborn() -> None:
            nonlocal absorbed
            while True:
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    absorbed += 1
                    if absorbed == 3:
                        raise
                    asyncio.current_task().uncancel()  # type: ignore[union-attr]

        task = asyncio.create_task(stubborn())
        await asyncio.sleep(0)
        await asyncio.wait_for(cancel_and_wait(task), 5)
        assert task.done()
        return absorbed

    assert asyncio.run(go()) == 3


def test_a_task_that_never_stops_is_left_with_a_warning_not_a_hang(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = None

    async def go() -> bool:
        nonlocal release
        release = asyncio.Event()

        async def deaf() -> None:
            while not release.is_set():  # type: ignore[union-attr]
                try:
                    await release.wait()  # type: ignore[union-attr]
                except asyncio.CancelledError:
                    asyncio.current_task().uncancel()  # type: ignore[union-attr]

        task = asyncio.create_task(deaf(), name="deaf")
        await asyncio.sleep(0)
        await asyncio.wait_for(cancel_and_wait(task, tries=2), 5)
        still_running = not task.done()
        release.set()
        await task
        return still_running

    with caplog.at_level(logging.WARNING):
        assert asyncio.run(go())
    assert "deaf did not stop after 2 cancels" in caplog.text


def test_a_finished_task_outcome_is_dropped() -> None:
    async def go() -> None:
        async def boom() -> None:
            raise RuntimeError("already failed")

        task = asyncio.create_task(boom())
        await asyncio.sleep(0)
        await cancel_and_wait(task)  # no exception: the caller only wants it gone

    asyncio.run(go())
