"""Level-triggered plumbing: watch kinds through the API and wake a reconcile loop on change."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

import httpx

from livemig.client import ApiClient
from livemig.clock import Clock
from livemig.errors import Gone

log = logging.getLogger(__name__)


class Informer:
    """Sets ``changed`` whenever an object of one of ``kinds`` changes; survives reconnects."""

    def __init__(self, client: ApiClient, kinds: Sequence[str], clock: Clock) -> None:
        self.client = client
        self.kinds = tuple(kinds)
        self.clock = clock
        self.changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._watch(kind)) for kind in self.kinds]
        self.changed.set()  # reconcile once at start

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self, kind: str) -> None:
        while True:
            try:
                _, since = await self.client.list(kind)
                self.changed.set()  # whatever happened while we were away
                async for _event in self.client.watch(kind, since):
                    self.changed.set()
            except (Gone, httpx.HTTPError) as exc:
                log.info("watch %s interrupted (%s); listing again", kind, exc)
                await self.clock.sleep(0.2)


async def reconcile_forever(
    informer: Informer,
    reconcile: Callable[[], Awaitable[None]],
    clock: Clock,
    resync: float = 2.0,
) -> None:
    """Run ``reconcile`` on every change, and every ``resync`` seconds regardless."""
    informer.start()
    try:
        while True:
            with contextlib.suppress(TimeoutError):
                await clock.wait_for(informer.changed.wait(), resync)
            informer.changed.clear()
            try:
                await reconcile()
            except Exception:  # one bad pass must not stop the loop; the next one retries
                log.exception("reconcile failed; retrying on the next change")
                await clock.sleep(0.2)
    finally:
        await informer.stop()
