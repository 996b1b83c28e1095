"""Where objects live: a Store keeps Kubernetes-style objects with optimistic concurrency and an
ordered change history that watchers can resume from.

``SQLiteStore`` is the implementation (a file for real use, ``:memory:`` for tests). Callers use
only the ``Store`` protocol, so an etcd backend can be added without touching them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol

from livemig.api.watch import EventType, WatchEvent

__all__ = ["EventType", "Store", "Subresource", "WatchEvent", "object_key"]

#: None: the object (its status is kept as stored); "status": only its status.
Subresource = Literal["status"] | None


def object_key(obj: dict[str, Any]) -> tuple[str, str, str]:
    """(kind, namespace or "", name) of an object dict."""
    meta = obj.get("metadata") or {}
    return str(obj.get("kind", "")), str(meta.get("namespace") or ""), str(meta.get("name", ""))


class Store(Protocol):
    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]: ...

    def list(
        self, kind: str | None = None, namespace: str | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """Objects (of a kind, in a namespace) and the revision they are current at."""
        ...

    def create(self, obj: dict[str, Any]) -> dict[str, Any]: ...

    def update(self, obj: dict[str, Any], subresource: Subresource = None) -> dict[str, Any]:
        """Replace the object (status kept) or, with ``"status"``, only its status;
        ``metadata.resourceVersion`` must be the current one (else Conflict)."""
        ...

    def delete(
        self, kind: str, namespace: str, name: str, resource_version: str | None = None
    ) -> dict[str, Any]: ...

    def revision(self) -> int: ...

    def watch(self, since: int, kind: str | None = None) -> AsyncIterator[WatchEvent]:
        """Every change after revision ``since``, in order, forever (Gone if compacted)."""
        ...
