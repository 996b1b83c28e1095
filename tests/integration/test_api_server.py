"""The API server over HTTP on 127.0.0.1, with a real SQLite file behind it."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from livemig.api.builders import migration_request
from livemig.client import ApiClient, Unauthorized
from livemig.errors import CancelRefused, Conflict, LoadError, MigrationError, NotFound
from livemig.server.run import ensure_token, start_server
from livemig.store.sqlite import SQLiteStore

POLICY = {
    "apiVersion": "migrations.kubevirt.io/v1alpha1",
    "kind": "MigrationPolicy",
    "metadata": {"name": "fast", "labels": {"team": "db"}},
    "spec": {
        "selectors": {"virtualMachineInstanceSelector": {"app": "pg"}},
        "bandwidthPerMigration": "1Gi",
    },
}


def migration(name: str, vmi: str = "pg-0") -> dict[str, Any]:
    return migration_request(name, vmi, "db")


@asynccontextmanager
async def cluster(folder: Path) -> AsyncIterator[tuple[ApiClient, str, SQLiteStore]]:
    store = SQLiteStore(folder / "state.db")
    token = ensure_token(folder)
    server = await start_server(store, token)
    client = ApiClient(server.url, token)
    try:
        yield client, server.url, store
    finally:
        await client.close()
        await server.stop()
        store.close()


def run(folder: Path, scenario: Callable[[ApiClient, str, SQLiteStore], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        async with cluster(folder) as (client, url, store):
            return await scenario(client, url, store)

    return asyncio.run(go())


def test_token_file_is_private_and_stable(tmp_path: Path) -> None:
    token = ensure_token(tmp_path)
    assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600
    assert ensure_token(tmp_path) == token and len(token) >= 32


def test_requests_without_the_token_are_refused_but_healthz_is_open(tmp_path: Path) -> None:
    async def scenario(client: ApiClient, url: str, store: SQLiteStore) -> None:
        async with httpx.AsyncClient(base_url=url) as anon:
            assert (await anon.get("/healthz")).text == "ok"
            assert (await anon.get("/apis/policies")).status_code == 401
            assert (await anon.get("/openapi.json")).status_code == 401
            wrong = await anon.get("/apis/policies", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
        async with ApiClient(url, "nope") as stranger:
            with pytest.raises(Unauthorized):
                await stranger.list("policies")
        schema = (await client._http.get("/openapi.json")).json()
        assert "/apis/{kind}" in schema["paths"]

    run(tmp_path, scenario)


def test_create_read_list_with_selector_and_delete(tmp_path: Path) -> None:
    async def scenario(client: ApiClient, url: str, store: SQLiteStore) -> None:
        created = await client.create(POLICY)
        assert created["metadata"]["resourceVersion"] == "1"
        assert (await client.get("policy", "fast"))["spec"]["bandwidthPerMigration"] == "1Gi"
        assert len((await client.list("migrationpolicies", label_selector="team=db"))[0]) == 1
        assert (await client.list("policies", label_selector="team!=db"))[0] == []
        await client.delete("MigrationPolicy", "fast")
        with pytest.raises(NotFound):
            await client.get("policies", "fast")

    run(tmp_path, scenario)


def test_invalid_objects_are_refused_with_lint_messages_and_nothing_is_stored(
    tmp_path: Path,
) -> None:
    async def scenario(client: ApiClient, url: str, store: SQLiteStore) -> LoadError:
        bad = {
            **POLICY,
            "spec": {
                **POLICY["spec"],
                "allowPostcopy": True,  # type: ignore[dict-item]
                "bandwidthPerMigration": "64Mb",
            },
        }
        with pytest.raises(LoadError) as info:
            await client.create(bad)
        assert store.list()[0] == [] and store.revision() == 0
        return info.value

    error = run(tmp_path, scenario)
    fields = {(p.field, p.message) for p in error.problems}
    assert (
        "spec.allowPostcopy",
        'unknown field "allowPostcopy" (did you mean allowPostCopy?)',
    ) in fields
    assert any(f == "spec.bandwidthPerMigration" and "did you mean 64Mi?" in m for f, m in fields)
    assert all(p.object == "MigrationPolicy/fast" for p in error.problems)


def test_a_stale_update_is_a_conflict(tmp_path: Path) -> None:
    async def scenario(client: ApiClient, url: str, store: SQLiteStore) -> None:
        first = await client.create(POLICY)
        await client.update({**first, "metadata": {**first["metadata"], "labels": {"a": "b"}}})
        with pytest.raises(Conflict):
            await client.update(first)
        changed = await client.modify(
            "policies",
            "fast",
            None,
            lambda o: {**o, "metadata": {**o["metadata"], "labels": {"a": "c"}}},
        )
        assert changed is not None and changed["metadata"]["labels"] == {"a": "c"}

    run(tmp_path, scenario)


def test_watch_streams_changes_in_order_and_resumes(tmp_path: Path) -> None:
    async def scenario(client: ApiClient, url: str, store: SQLiteStore) -> list[Any]:
        seen: list[tuple[str, str, int]] = []

        async def watch(since: int, n: int) -> None:
            async for e in client.watch("policies", since):
                seen.append((e.type, e.object["metadata"]["name"], e.revision))
                if len(seen) == n:
                    return

        watcher = asyncio.create_task(watch(0, 3))
        first = await client.create(POLICY)
        await client.create({**POLICY, "metadata": {"name": "slow"}})
        await client.update({**first, "metadata": {**first["metadata"], "labels": {}}})
        await asyncio.wait_for(watcher, 10)
        resumed = []
        async for e in client.watch("policies", 1):
            resumed.append(e.revision)
            if len(resumed) == 2:
                break
        return [seen, resumed]

    seen, resumed = run(tmp_path, scenario)
    assert seen == [("ADDED", "fast", 1), ("ADDED", "slow", 2), ("MODIFIED", "fast", 3)]
    assert resumed == [2, 3]


def test_a_second_migration_for_a_busy_vmi_is_rejected(tmp_path: Path) -> None:
    async def scenario(client: ApiClient, url: str, store: SQLiteStore) -> str:
        await client.create(migration("m1"))
        await client.create(migration("other", vmi="pg-1"))
        with pytest.raises(MigrationError) as info:
            await client.create(migration("m2"))
        return str(info.value)

    message = run(tmp_path, scenario)
    assert "db/pg-0 already has an unfinished migration m1" in message


def test_create_and_update_never_set_the_status(tmp_path: Path) -> None:
    """Applying a dumped object (status and all) cannot move a VM or finish a migration: only
    the status subresource writes status."""

    async def scenario(client: ApiClient, url: str, store: SQLiteStore) -> None:
        dumped = migration("m1")
        dumped["status"] = {"phase": "Succeeded"}
        dumped["metadata"]["creationTimestamp"] = "2000-01-01T00:00:00.000000Z"
        created = await client.create(dumped)
        assert "status" not in created
        assert created["metadata"]["creationTimestamp"] > "2026"
        created["status"] = {"phase": "Running"}
        await client.update(created, status=True)
        current = await client.get("migrations", "m1", "db")
        current["status"] = {"phase": "Failed"}
        replaced = await client.update(current)
        assert replaced["status"] == {"phase": "Running"}

    run(tmp_path, scenario)


def test_deleting_a_migration_in_post_copy_is_refused(tmp_path: Path) -> None:
    async def scenario(client: ApiClient, url: str, store: SQLiteStore) -> None:
        m = await client.create(migration("m1"))
        m["status"] = {"phase": "Running", "migrationState": {"mode": "PostCopy"}}
        await client.update(m, status=True)
        with pytest.raises(CancelRefused, match="post-copy"):
            await client.delete("migrations", "m1", "db")
        assert (await client.get("migrations", "m1", "db"))["metadata"]["name"] == "m1"

    run(tmp_path, scenario)
