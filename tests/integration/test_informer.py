"""The watch-fed cache the controller and agents reconcile from, against the real API server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from livemig.api.status import timestamp
from livemig.clock import RealClock
from livemig.controller.controller import EVENT_TTL, Controller
from livemig.errors import NotFound
from livemig.informer import Informer, reconcile_forever
from tests.integration.test_api_server import POLICY, cluster, migration

clock = RealClock()
VMIM = "VirtualMachineInstanceMigration"


async def until(check: Any, within: float = 5.0) -> None:
    deadline = clock.now() + within
    while not check():
        assert clock.now() < deadline, "the cache never caught up"
        await asyncio.sleep(0.01)


def test_cache_follows_creates_updates_and_deletes_made_by_others(tmp_path: Path) -> None:
    async def go() -> None:
        async with cluster(tmp_path) as (client, _, _):
            await client.create(migration("before"))
            informer = Informer(client, (VMIM, "MigrationPolicy"), clock)
            informer.start()
            try:
                await asyncio.wait_for(informer.synced(), 5)
                assert [m["metadata"]["name"] for m in informer.objects(VMIM)] == ["before"]
                await client.create(migration("after", "other"))
                await client.create(POLICY)
                await until(lambda: len(informer.objects(VMIM)) == 2)
                await until(lambda: informer.get("MigrationPolicy", "fast", None) is not None)

                fresh = await client.get(VMIM, "after", "db")
                fresh["metadata"].setdefault("labels", {})["seen"] = "yes"
                await client.update(fresh)
                await until(
                    lambda: (
                        (informer.get(VMIM, "after", "db") or {})["metadata"].get("labels")
                        == {"seen": "yes"}
                    )
                )
                await client.delete(VMIM, "before", "db")
                await until(lambda: informer.get(VMIM, "before", "db") is None)
            finally:
                await informer.stop()

    asyncio.run(go())


def test_own_writes_are_visible_at_once_and_a_stale_copy_is_retried(tmp_path: Path) -> None:
    async def go() -> None:
        async with cluster(tmp_path) as (client, _, _):
            await client.create(migration("m"))
            informer = Informer(client, (VMIM,), clock)
            informer.start()
            await asyncio.wait_for(informer.synced(), 5)
            await informer.stop()  # the cache stays, but nothing refreshes it now
            first = informer.get(VMIM, "m", "db")
            # Someone else writes: our cached copy is stale.
            other = await client.get(VMIM, "m", "db")
            other["metadata"]["labels"] = {"by": "other"}
            await client.update(other)

            def stamp(o: dict[str, Any]) -> dict[str, Any]:
                o.setdefault("status", {})["phase"] = "Pending"
                return o

            out = await informer.modify(VMIM, "m", "db", stamp, status=True)
            assert out is not None
            # The stale first try conflicted and was redone on a fresh read: both writes
            # survive, and the cache holds our result without any watch running.
            assert out["metadata"]["labels"] == {"by": "other"}
            assert out["status"]["phase"] == "Pending"
            assert informer.get(VMIM, "m", "db") == out
            assert first is not None and "status" not in first  # handed-out copies untouched
            # An event for an older revision arriving late does not roll the cache back.
            informer._remember(VMIM, first)
            assert informer.get(VMIM, "m", "db") == out
            with pytest.raises(NotFound):
                await informer.modify(VMIM, "absent", "db", stamp)

    asyncio.run(go())


def test_reconcile_waits_for_the_first_list_and_runs_on_every_change(tmp_path: Path) -> None:
    async def go() -> None:
        async with cluster(tmp_path) as (client, _, _):
            for i in range(3):
                await client.create(migration(f"m{i}", f"vm{i}"))
            informer = Informer(client, (VMIM, "MigrationPolicy", "Namespace"), clock)
            seen: list[int] = []

            async def reconcile() -> None:
                seen.append(len(informer.objects(VMIM)))

            loop = asyncio.create_task(reconcile_forever(informer, reconcile, clock, resync=60))
            try:
                await until(lambda: len(seen) >= 1)
                assert seen[0] == 3  # never a pass over a half-listed cluster
                await client.create(migration("m3", "vm3"))
                await until(lambda: seen[-1] == 4)
            finally:
                loop.cancel()
                await asyncio.gather(loop, return_exceptions=True)

    asyncio.run(go())


def test_the_controller_deletes_events_an_hour_after_they_last_happened(tmp_path: Path) -> None:
    """Kubernetes' event TTL: a fleet that migrates all day must not grow its store forever."""

    def event(name: str, age: float) -> dict[str, Any]:
        when = timestamp(datetime.fromtimestamp(clock.wall() - age, UTC))
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": "db"},
            "involvedObject": {"kind": "Node", "name": "node-1"},
            "reason": "Test",
            "message": "m",
            "type": "Normal",
            "count": 3,
            "firstTimestamp": when,
            "lastTimestamp": when,
        }

    async def go() -> list[str]:
        async with cluster(tmp_path) as (client, _, _):
            await client.create(event("old", EVENT_TTL + 60))
            await client.create(event("recent", EVENT_TTL - 60))
            await Controller(client, clock)._expire_events()
            items, _ = await client.list("Event")
            return sorted(e["metadata"]["name"] for e in items)

    assert asyncio.run(go()) == ["recent"]
