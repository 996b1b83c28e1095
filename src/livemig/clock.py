"""The one place livemig reads the time or sleeps, so tests and the planner can replace it."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale (only differences mean anything)."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    async def wait_for(self, aw: Awaitable[T], within: float) -> T:
        """``aw``'s result, or TimeoutError after ``within`` seconds of this clock."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch, for timestamps people read."""
        ...


class RealClock:
    """Wall-clock time for real QEMU runs."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait_for(self, aw: Awaitable[T], within: float) -> T:
        return await asyncio.wait_for(aw, within)

    def wall(self) -> float:
        """Seconds since the epoch, for timestamps people read."""
        return time.time()


def blocking_sleep(seconds: float) -> None:
    """For synchronous code paths that must wait (process start-up probes)."""
    time.sleep(seconds)


class LoopClock(RealClock):
    """The running event loop's own time: under a virtual-time loop (looptime) a 150 s wait
    takes no wall time at all. Timestamps count from ``epoch`` (2026-01-01 by default)."""

    def __init__(self, epoch: float = 1_767_225_600.0) -> None:
        self.epoch = epoch

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def wall(self) -> float:
        return self.epoch + self.now()


class Backoff:
    """Delays for retrying a call that failed: ``first`` doubling to ``cap``, each jittered
    down by up to half, so that many clients cut off together do not all call back at once."""

    def __init__(self, first: float, cap: float, rng: random.Random | None = None) -> None:
        self.first = first
        self.cap = cap
        self._rng = rng or random.Random()
        self._next = first

    def next(self) -> float:
        delay = self._next * self._rng.uniform(0.5, 1.0)
        self._next = min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first
