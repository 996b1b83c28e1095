"""The SQLite store: one table of objects, one of changes; WAL with synchronous=FULL, so an
acknowledged write survives ``kill -9`` of the process (and of the machine's power, as far as
the disk honours fsync).

Events are the exception: they are written without an fsync of their own (synchronous=NORMAL
for that commit), and reach the disk with the next write that has one. A migration writes
half a dozen events; an fsync each was ~30 ms of control_latency's hand-over path. A machine
that loses power may lose the newest events, never an object's state (Kubernetes often keeps
events in a store of their own for the same reason).

Every method is blocking and thread-safe (one lock around one connection): an fsync was seen
to take 10–30 s on a busy virtual disk, so the API server calls the store from worker threads
and its event loop — /healthz, watches and, in ``livemig up``, the agents and their QMP
monitors — never waits for the disk."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from livemig.errors import AlreadyExists, Conflict, Gone, NotFound
from livemig.store import EventType, Subresource, WatchEvent, object_key

#: Changes kept for watchers to resume from; older ones are compacted away.
HISTORY = 50_000
#: How often a watcher looks for writes made by other processes on the same file.
POLL_INTERVAL = 0.05

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    revision INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS changes (
    revision INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL
);
"""


Events = list[WatchEvent]  # (the class below has a method called list)


def _now() -> str:
    # Microseconds make creationTimestamp a creation order, which admission relies on.
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


#: Kinds whose writes are not fsynced on their own (see the module docstring).
BEST_EFFORT_KINDS = frozenset({"Event"})


class SQLiteStore:
    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            # Readable by its owner only; SQLite gives the -wal and -shm files the same mode.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            os.chmod(self.path, 0o600)
        self._lock = threading.RLock()
        self._event_lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        #: What watchers wait on, per kind (None: watchers of every kind); a write wakes only
        #: the watchers of its own kind. Waking every watch stream for every write made each
        #: event write cost ~25 thread hops and queries in a 3-node cluster.
        self._changed: dict[str | None, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- reads ---------------------------------------------------------------------------

    def revision(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT MAX(revision) FROM changes").fetchone()
        return int(row[0] or 0)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        with self._lock:
            row = self._db.execute(
                "SELECT data FROM objects WHERE kind=? AND namespace=? AND name=?",
                (kind, namespace, name),
            ).fetchone()
        if row is None:
            where = f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"
            raise NotFound(f"{where} not found")
        return dict(json.loads(row[0]))

    def list(
        self, kind: str | None = None, namespace: str | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        sql, args = "SELECT data FROM objects WHERE 1=1", []
        if kind is not None:
            sql += " AND kind=?"
            args.append(kind)
        if namespace is not None:
            sql += " AND namespace=?"
            args.append(namespace)
        with self._lock:
            self._db.execute("BEGIN")
            try:
                rows = self._db.execute(sql + " ORDER BY kind, namespace, name", args).fetchall()
                rev = self.revision()
            finally:
                self._db.execute("COMMIT")
        return [json.loads(r[0]) for r in rows], rev

    # --- writes --------------------------------------------------------------------------

    def _write(
        self, kind: str, key: tuple[str, str, str], obj: dict[str, Any], change: EventType
    ) -> dict[str, Any]:
        """Inside a transaction: record the change, store the object at its new revision."""
        cur = self._db.execute(
            "INSERT INTO changes (type, kind, data) VALUES (?, ?, '')", (change, kind)
        )
        rev = int(cur.lastrowid or 0)
        obj.setdefault("metadata", {})["resourceVersion"] = str(rev)
        data = json.dumps(obj, separators=(",", ":"))
        self._db.execute("UPDATE changes SET data=? WHERE revision=?", (data, rev))
        if change == "DELETED":
            self._db.execute("DELETE FROM objects WHERE kind=? AND namespace=? AND name=?", key)
        else:
            self._db.execute(
                "INSERT OR REPLACE INTO objects (kind, namespace, name, revision, data) "
                "VALUES (?, ?, ?, ?, ?)",
                (*key, rev, data),
            )
        if rev % 1000 == 0:
            self._db.execute("DELETE FROM changes WHERE revision <= ?", (rev - HISTORY,))
        return obj

    @contextlib.contextmanager
    def _transaction(self, kind: str) -> Iterator[None]:
        """One write transaction; watchers are woken only after it commits. Best-effort kinds
        (events) commit without their own fsync."""
        with self._lock:
            relaxed = kind in BEST_EFFORT_KINDS
            if relaxed:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            finally:
                if relaxed:
                    self._db.execute("PRAGMA synchronous=FULL")
            self._notify(kind)

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a new object. uid, creationTimestamp, generation and resourceVersion are the
        server's to set: whatever the client sent there is replaced (so no client can back-date
        a migration to jump the admission queue)."""
        obj = json.loads(json.dumps(obj))  # our own copy
        kind, namespace, name = key = object_key(obj)
        meta = obj.setdefault("metadata", {})
        meta["uid"] = str(uuid.uuid4())
        meta["generation"] = 1
        with self._transaction(kind):
            # Stamped under the lock, so creation order is the order of revisions.
            meta["creationTimestamp"] = _now()
            exists = self._db.execute(
                "SELECT 1 FROM objects WHERE kind=? AND namespace=? AND name=?", key
            ).fetchone()
            if exists:
                where = f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"
                raise AlreadyExists(f"{where} already exists")
            out = self._write(kind, key, obj, "ADDED")
        return out

    def update(self, obj: dict[str, Any], subresource: Subresource = None) -> dict[str, Any]:
        """Replace an object; its ``metadata.resourceVersion`` must be the current one.

        As in Kubernetes, ``status`` is a subresource: a plain update keeps the stored status
        whatever the body says, and a ``"status"`` update changes only the status. Server-set
        metadata (uid, creationTimestamp, generation) always stays the server's."""
        obj = json.loads(json.dumps(obj))
        kind, namespace, name = key = object_key(obj)
        expected = (obj.get("metadata") or {}).get("resourceVersion")
        with self._transaction(kind):
            current = self.get(kind, namespace, name)
            have = current["metadata"]["resourceVersion"]
            if expected is None or str(expected) != have:
                raise Conflict(
                    f"{kind}/{namespace}/{name}: resourceVersion {expected} is stale "
                    f"(now {have}); re-read and retry"
                )
            if subresource == "status":
                new = current
                if "status" in obj:
                    new["status"] = obj["status"]
                else:
                    new.pop("status", None)
            else:
                new = obj
                new.pop("status", None)
                if "status" in current:
                    new["status"] = current["status"]
                meta = new["metadata"]
                for kept in ("uid", "creationTimestamp"):
                    meta[kept] = current["metadata"].get(kept)
                generation = int(current["metadata"].get("generation", 1))
                changed = new.get("spec") != current.get("spec")
                meta["generation"] = generation + 1 if changed else generation
            out = self._write(kind, key, new, "MODIFIED")
        return out

    def delete(
        self, kind: str, namespace: str, name: str, resource_version: str | None = None
    ) -> dict[str, Any]:
        with self._transaction(kind):
            current = self.get(kind, namespace, name)
            have = current["metadata"]["resourceVersion"]
            if resource_version is not None and str(resource_version) != have:
                raise Conflict(
                    f"{kind}/{namespace}/{name}: resourceVersion {resource_version} is stale "
                    f"(now {have})"
                )
            out = self._write(kind, (kind, namespace, name), current, "DELETED")
        return out

    # --- watch ---------------------------------------------------------------------------

    def _notify(self, kind: str) -> None:
        # Wake this process's watchers of ``kind`` (and of every kind): set the events they
        # wait on, and start new ones. A write may come from a worker thread; the events
        # belong to the watchers' loop.
        with self._event_lock:
            woken = [e for k in (kind, None) if (e := self._changed.pop(k, None)) is not None]
        if not woken or self._loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for event in woken:
            if running is self._loop:
                event.set()
            elif not self._loop.is_closed():
                self._loop.call_soon_threadsafe(event.set)

    def _change_event(self, kind: str | None) -> asyncio.Event:
        # Its own small lock, never held across I/O: the loop must not wait for a commit here.
        with self._event_lock:
            event = self._changed.get(kind)
            if event is None:
                self._loop = asyncio.get_running_loop()
                event = self._changed[kind] = asyncio.Event()
            return event

    def changes_since(self, since: int, kind: str | None = None) -> Events:
        sql = "SELECT revision, type, data FROM changes WHERE revision > ?"
        args: list[int | str] = [since]
        if kind is not None:
            sql += " AND kind=?"
            args.append(kind)
        with self._lock:
            oldest = self._db.execute("SELECT MIN(revision) FROM changes").fetchone()[0]
            if oldest is not None and since < oldest - 1:
                raise Gone(f"revision {since} was compacted (oldest kept: {oldest}); list again")
            rows = self._db.execute(sql + " ORDER BY revision LIMIT 1000", args).fetchall()
        return [WatchEvent(int(r[0]), r[1], json.loads(r[2])) for r in rows]

    async def watch(self, since: int, kind: str | None = None) -> AsyncIterator[WatchEvent]:
        while True:
            events = await asyncio.to_thread(self.changes_since, since, kind)
            for event in events:
                yield event
                since = event.revision
            if not events:
                # Woken by our own writes; the timeout catches other processes' writes.
                changed = self._change_event(kind)
                if await asyncio.to_thread(self.changes_since, since, kind):
                    continue  # written between our read and our wait
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), POLL_INTERVAL)
