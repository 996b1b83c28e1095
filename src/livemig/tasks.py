"""Stopping asyncio tasks reliably."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task[Any], tries: int = 10) -> None:
    """Cancel ``task`` and wait until it has ended; its own outcome is dropped.

    httpx closes a response inside a cancellation shield, and a cancel that lands there can be
    absorbed: the task goes on (a watch keeps watching) and a plain ``await task`` never
    returns — seen as a shutdown hanging once in a few runs. So ask again until it ends, and
    after ``tries`` half-second rounds leave it behind with a warning rather than hang."""
    for _ in range(tries):
        if task.done():
            break
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    if not task.done():
        log.warning("task %s did not stop after %d cancels; leaving it", task.get_name(), tries)
        return
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
