"""Level-triggered plumbing: a watch-fed cache of some kinds, and a reconcile loop woken by it.

An :class:`Informer` lists each kind once, then follows its watch stream, so a reconcile pass
reads the cluster from memory instead of asking the API server for every kind again. Writes
made through the informer go into the cache as soon as the server acknowledges them (the
watch brings the same revision later and changes nothing), so a pass never acts on a state
older than its own last write — which is what keeps admission from over-filling a slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx

from livemig.client import ApiClient
from livemig.clock import Backoff, Clock
from livemig.errors import Gone, LivemigError
from livemig.tasks import cancel_and_wait

log = logging.getLogger(__name__)
#: Where components say, once, that they are up (the CLI shows this logger at INFO).
LIFECYCLE = logging.getLogger("livemig.lifecycle")

Key = tuple[str, str]  # (namespace or "", name)


def key_of(obj: dict[str, Any]) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace") or "", meta["name"]


def _revision(obj: dict[str, Any] | None) -> int:
    return int(((obj or {}).get("metadata") or {}).get("resourceVersion") or 0)


class Informer:
    """A cache of ``kinds`` kept current by watches; sets ``changed`` whenever it changes.

    Objects handed out by :meth:`objects` and :meth:`get` are the cache's own: read them, do
    not change them (:meth:`modify` works on a copy)."""

    def __init__(self, client: ApiClient, kinds: Sequence[str], clock: Clock) -> None:
        self.client = client
        self.kinds = tuple(kinds)
        self.clock = clock
        self.changed = asyncio.Event()
        self._cache: dict[str, dict[Key, dict[str, Any]]] = {kind: {} for kind in self.kinds}
        self._synced: set[str] = set()
        self._all_synced = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # --- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._watch(kind)) for kind in self.kinds]

    async def stop(self) -> None:
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks = []

    async def synced(self) -> None:
        """Wait until every kind has been listed once."""
        await self._all_synced.wait()

    async def _watch(self, kind: str) -> None:
        backoff = Backoff(0.2, 5.0)  # an API server that is away is not called 5 times a second
        while True:
            try:
                items, since = await self.client.list(kind)
                backoff.reset()
                self._cache[kind] = {
                    key_of(o): o for o in items if isinstance((o or {}).get("metadata"), dict)
                }
                self._synced.add(kind)
                if self._synced.issuperset(self.kinds):
                    self._all_synced.set()
                self.changed.set()  # whatever happened while we were away
                async for event in self.client.watch(kind, since):
                    try:
                        if event.type == "DELETED":
                            cached = self._cache[kind].get(key_of(event.object))
                            if _revision(cached) <= event.revision:
                                self._cache[kind].pop(key_of(event.object), None)
                        else:
                            self._remember(kind, event.object)
                    except (KeyError, TypeError, ValueError) as exc:
                        # One malformed object must not stop the watch of its whole kind.
                        log.warning("watch %s: skipped a malformed event: %r", kind, exc)
                    self.changed.set()
            except (Gone, httpx.HTTPError) as exc:
                log.info("watch %s interrupted (%s); listing again", kind, exc)
                await self.clock.sleep(backoff.next())
            except (LivemigError, ValueError, KeyError, TypeError) as exc:
                log.warning("watch %s failed (%s); listing again in 1 s", kind, exc)
                await self.clock.sleep(1.0)

    # --- reads -------------------------------------------------------------------------------

    def objects(self, kind: str) -> list[dict[str, Any]]:
        """Every cached object of ``kind``, in name order."""
        cache = self._cache[kind]
        return [cache[k] for k in sorted(cache)]

    def get(self, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        return self._cache[kind].get((namespace or "", name))

    # --- writes (through to the server, then into the cache) ---------------------------------

    def _remember(self, kind: str, obj: dict[str, Any]) -> None:
        """Keep ``obj`` unless the cache already holds a newer revision of it."""
        key = key_of(obj)
        if _revision(obj) >= _revision(self._cache[kind].get(key)):
            self._cache[kind][key] = obj

    async def modify(
        self,
        kind: str,
        name: str,
        namespace: str | None,
        change: Callable[[dict[str, Any]], dict[str, Any] | None],
        status: bool = False,
    ) -> dict[str, Any] | None:
        """:meth:`ApiClient.modify`, starting from the cached copy (no read when it is current).

        Raises NotFound if the object is gone."""
        cached = self.get(kind, name, namespace)
        out = await self.client.modify(
            kind,
            name,
            namespace,
            change,
            current=copy.deepcopy(cached) if cached else None,
            status=status,
        )
        if out is not None and kind in self._cache:
            self._remember(kind, out)
        return out

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        out = await self.client.create(obj)
        if out["kind"] in self._cache:
            self._remember(out["kind"], out)
        return out


async def reconcile_forever(
    informer: Informer,
    reconcile: Callable[[], Awaitable[None]],
    clock: Clock,
    resync: float = 2.0,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Run ``reconcile`` on every change, and every ``resync`` seconds regardless.

    The first pass waits until every kind is in the cache: acting on a half-listed cluster
    would, say, fail a migration whose VMI simply was not listed yet. ``on_ready`` is called
    once then (components log one line that they are up)."""
    informer.start()
    try:
        await informer.synced()
        if on_ready is not None:
            on_ready()
        while True:
            informer.changed.clear()
            try:
                await reconcile()
            except Exception:  # one bad pass must not stop the loop; the next one retries
                log.exception("reconcile failed; retrying on the next change")
                await clock.sleep(0.2)
            with contextlib.suppress(TimeoutError):
                await clock.wait_for(informer.changed.wait(), resync)
    finally:
        await informer.stop()
