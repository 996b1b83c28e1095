"""The SQLite store: optimistic concurrency, ordered watch, durability."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from livemig.api.watch import WatchEvent
from livemig.errors import AlreadyExists, Conflict, Gone, NotFound
from livemig.store.sqlite import SQLiteStore


def policy(name: str, bw: str = "64Mi") -> dict:  # type: ignore[type-arg]
    return {
        "apiVersion": "migrations.kubevirt.io/v1alpha1",
        "kind": "MigrationPolicy",
        "metadata": {"name": name},
        "spec": {"selectors": {}, "bandwidthPerMigration": bw},
    }


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "state.db")


def test_create_get_list_delete(store: SQLiteStore) -> None:
    created = store.create(policy("a"))
    assert created["metadata"]["resourceVersion"] == "1"
    assert created["metadata"]["uid"] and created["metadata"]["creationTimestamp"]
    assert store.get("MigrationPolicy", "", "a")["spec"]["bandwidthPerMigration"] == "64Mi"
    store.create(policy("b"))
    items, rev = store.list("MigrationPolicy")
    assert [i["metadata"]["name"] for i in items] == ["a", "b"] and rev == 2
    store.delete("MigrationPolicy", "", "a")
    with pytest.raises(NotFound):
        store.get("MigrationPolicy", "", "a")


def test_creating_twice_is_refused(store: SQLiteStore) -> None:
    store.create(policy("a"))
    with pytest.raises(AlreadyExists):
        store.create(policy("a"))


def test_a_stale_write_is_a_conflict_and_changes_nothing(store: SQLiteStore) -> None:
    first = store.create(policy("a"))
    mine, theirs = dict(first), dict(first)
    store.update({**theirs, "spec": {"selectors": {}, "bandwidthPerMigration": "1Gi"}})
    with pytest.raises(Conflict, match="stale"):
        store.update({**mine, "spec": {"selectors": {}, "bandwidthPerMigration": "2Gi"}})
    assert store.get("MigrationPolicy", "", "a")["spec"]["bandwidthPerMigration"] == "1Gi"
    with pytest.raises(Conflict):
        store.delete(
            "MigrationPolicy", "", "a", resource_version=first["metadata"]["resourceVersion"]
        )


def test_updates_keep_uid_and_bump_generation_on_spec_change(store: SQLiteStore) -> None:
    first = store.create(policy("a"))
    second = store.update({**first, "spec": {"selectors": {}}})
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert second["metadata"]["generation"] == 2
    third = store.update({**second, "status": {"x": 1}}, "status")
    assert third["metadata"]["generation"] == 2
    assert third["status"] == {"x": 1}


def test_server_owned_metadata_cannot_be_set_by_a_client(store: SQLiteStore) -> None:
    """A client cannot back-date an object (admission orders by creationTimestamp) or pick
    its uid or generation."""
    forged = policy("a")
    forged["metadata"].update(
        uid="forged", creationTimestamp="2000-01-01T00:00:00.000000Z", generation=7
    )
    first = store.create(forged)
    assert first["metadata"]["uid"] != "forged"
    assert first["metadata"]["creationTimestamp"] > "2026"
    assert first["metadata"]["generation"] == 1
    meta = {**first["metadata"], "uid": "x", "creationTimestamp": "2000", "generation": 99}
    second = store.update({**first, "metadata": meta})
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert second["metadata"]["creationTimestamp"] == first["metadata"]["creationTimestamp"]
    assert second["metadata"]["generation"] == 1  # the spec did not change


def test_status_is_a_subresource(store: SQLiteStore) -> None:
    """A plain update keeps the stored status (an applied dump cannot move a VM); a status
    update changes nothing but the status."""
    first = store.create(policy("a"))
    with_status = store.update({**first, "status": {"nodeName": "node-1"}}, "status")
    assert with_status["status"] == {"nodeName": "node-1"}
    plain = store.update(
        {**with_status, "status": {"nodeName": "elsewhere"}, "spec": {"selectors": {}}}
    )
    assert plain["status"] == {"nodeName": "node-1"}
    assert plain["spec"] == {"selectors": {}}
    only_status = store.update(
        {**plain, "spec": {"selectors": {"x": 1}}, "status": {"nodeName": "node-2"}}, "status"
    )
    assert only_status["spec"] == {"selectors": {}}
    assert only_status["status"] == {"nodeName": "node-2"}


async def collect(
    store: SQLiteStore, since: int, n: int, kind: str | None = None
) -> list[WatchEvent]:
    out = []
    async for event in store.watch(since, kind):
        out.append(event)
        if len(out) == n:
            break
    return out


def test_watch_sees_every_change_in_order_and_resumes(store: SQLiteStore) -> None:
    async def scenario() -> tuple[list[WatchEvent], list[WatchEvent]]:
        watcher = asyncio.create_task(collect(store, 0, 4))
        await asyncio.sleep(0)
        a = store.create(policy("a"))
        store.update({**a, "spec": {"selectors": {}}})
        store.create(policy("b"))
        store.delete("MigrationPolicy", "", "a")
        events = await asyncio.wait_for(watcher, 5)
        resumed = await asyncio.wait_for(collect(store, events[1].revision, 2), 5)
        return events, resumed

    events, resumed = asyncio.run(scenario())
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"),
        ("MODIFIED", "a"),
        ("ADDED", "b"),
        ("DELETED", "a"),
    ]
    assert [e.revision for e in events] == [1, 2, 3, 4]
    assert [e.revision for e in resumed] == [3, 4]


def test_watch_sees_writes_from_another_process(store: SQLiteStore, tmp_path: Path) -> None:
    code = (
        "from livemig.store.sqlite import SQLiteStore; import sys; "
        "SQLiteStore(sys.argv[1]).create({'kind': 'Namespace', 'apiVersion': 'v1', "
        "'metadata': {'name': 'from-afar'}})"
    )

    async def scenario() -> list[WatchEvent]:
        watcher = asyncio.create_task(collect(store, 0, 1))
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, store.path)
        await proc.wait()
        return await asyncio.wait_for(watcher, 5)

    (event,) = asyncio.run(scenario())
    assert event.object["metadata"]["name"] == "from-afar"


def test_a_watch_from_compacted_history_is_gone(store: SQLiteStore) -> None:
    store.create(policy("a"))
    store._db.execute("DELETE FROM changes")  # as compaction would, long after
    store.create(policy("b"))
    with pytest.raises(Gone):
        store.changes_since(0)


def test_an_acknowledged_write_survives_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    code = (
        "import os, signal, sys\n"
        "from livemig.store.sqlite import SQLiteStore\n"
        "s = SQLiteStore(sys.argv[1])\n"
        "for i in range(50):\n"
        "    s.create({'kind': 'Namespace', 'apiVersion': 'v1', 'metadata': {'name': f'n{i}'}})\n"
        "print('acknowledged', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(db)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == -9 and "acknowledged" in proc.stdout
    items, rev = SQLiteStore(db).list("Namespace")
    assert len(items) == 50 and rev == 50
