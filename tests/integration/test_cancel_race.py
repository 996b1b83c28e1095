"""The cancel / post-copy race, through a real API server and SQLite file and the agent's own
recording code: whichever of "cancel" and "switch to post-copy" reaches the store first wins,
and the loser sees it. (Before, the switch was written up to a second after QEMU was told, so a
cancel in that window was accepted and the VM moved anyway.)"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from livemig.agent.agent import NodeAgent
from livemig.api.lifecycle import MigrationStatus, transition
from livemig.api.transfer import MigrationMode
from livemig.client import ApiClient
from livemig.clock import RealClock
from livemig.errors import CancelRefused, NotFound

from ..fakes import FakeVM
from .test_api_server import cluster, migration

NOW = datetime(2026, 11, 29, tzinfo=UTC)


class NoHypervisor:
    """The agent is only asked to record here; it never starts a VM."""

    def handle_for(self, spec: object, incoming: bool = False) -> str:
        raise AssertionError("not used")

    async def attach(self, spec: object, handle: str) -> FakeVM:
        raise AssertionError("not used")

    async def start_vm(self, spec: object) -> FakeVM:
        raise AssertionError("not used")

    async def start_incoming(self, spec: object, uri: str, params: object) -> FakeVM:
        raise AssertionError("not used")


async def running_migration(client: ApiClient, name: str) -> None:
    await client.create(migration(name, vmi=f"vm-of-{name}"))  # one unfinished per VMI

    def to_running(o: dict) -> dict | None:  # type: ignore[type-arg]
        return transition(
            o,
            lambda st: (
                st.admit("node-1", NOW)
                .schedule("node-1", "node-2", 2**27, None, {}, NOW)
                .preparing(NOW)
                .target_ready("tcp:127.0.0.1:1", NOW)
                .start(NOW)
            ),
        )

    await client.modify("migrations", name, "db", to_running, status=True)


def agent(client: ApiClient, folder: Path) -> NodeAgent:
    return NodeAgent(client, "node-1", folder, RealClock(), hypervisor=NoHypervisor())  # type: ignore[arg-type]


def test_a_cancel_that_reaches_the_store_first_stops_the_switch(tmp_path: Path) -> None:
    async def go() -> bool | None:
        async with cluster(tmp_path) as (client, _url, _store):
            await running_migration(client, "m1")
            await client.delete("migrations", "m1", "db")  # the user's cancel lands first
            return await agent(client, tmp_path / "agent")._record_switch(
                ("db", "m1"), MigrationMode.POST_COPY
            )

    assert asyncio.run(go()) is False  # so the runner cancels instead of switching


def test_a_switch_recorded_first_makes_the_cancel_fail_with_the_reason(tmp_path: Path) -> None:
    async def go() -> tuple[bool | None, MigrationStatus]:
        async with cluster(tmp_path) as (client, _url, _store):
            await running_migration(client, "m1")
            recorded = await agent(client, tmp_path / "agent")._record_switch(
                ("db", "m1"), MigrationMode.POST_COPY
            )
            with pytest.raises(CancelRefused, match="post-copy"):
                await client.delete("migrations", "m1", "db")
            return recorded, MigrationStatus.of(await client.get("migrations", "m1", "db"))

    recorded, status = asyncio.run(go())
    assert recorded is True and status.in_post_copy and status.is_active


def test_cancel_and_switch_at_the_same_instant_never_both_succeed(tmp_path: Path) -> None:
    """Twenty rounds of both at once: exactly one of them wins each time."""

    async def go() -> list[tuple[bool, bool]]:
        outcomes = []
        async with cluster(tmp_path) as (client, _url, _store):
            recorder = agent(client, tmp_path / "agent")
            for i in range(20):
                name = f"m{i}"
                await running_migration(client, name)

                async def cancel(name: str = name) -> bool:
                    try:
                        await client.delete("migrations", name, "db")
                        return True
                    except CancelRefused:
                        return False

                switched, cancelled = await asyncio.gather(
                    recorder._record_switch(("db", name), MigrationMode.POST_COPY), cancel()
                )
                outcomes.append((bool(switched), cancelled))
                with pytest.raises(NotFound) if cancelled else contextlib.nullcontext():
                    await client.get("migrations", name, "db")
        return outcomes

    outcomes = asyncio.run(go())
    assert all(switched != cancelled for switched, cancelled in outcomes), outcomes
