"""Writes the API and the web console make alike: an object checked as lint checks it, one
unfinished migration per VMI, and a cancel refused in post-copy."""

from __future__ import annotations

from typing import Any

from livemig.api.lifecycle import MigrationStatus
from livemig.api.loading import validate
from livemig.api.models import Resource
from livemig.errors import CancelRefused, Conflict, MigrationError, UsageError
from livemig.store import Store, object_key

VMIM = "VirtualMachineInstanceMigration"


def checked(cls: type[Resource], body: dict[str, Any]) -> dict[str, Any]:
    """Validate like lint does; return the object as it will be stored."""
    if body.get("kind") != cls.KIND:
        raise UsageError(f"the URL is for {cls.KIND} but the body has kind {body.get('kind')!r}")
    meta = body.setdefault("metadata", {}) if isinstance(body.get("metadata"), dict) else None
    if meta is not None:
        if cls.NAMESPACED:
            meta.setdefault("namespace", "default")
        else:
            meta.pop("namespace", None)
    validate(body)
    return body


def one_migration_at_a_time(store: Store, obj: dict[str, Any]) -> None:
    _, ns, _ = object_key(obj)
    vmi = obj["spec"]["vmiName"]
    items, _ = store.list("VirtualMachineInstanceMigration", ns)
    for other in items:
        status = MigrationStatus.of(other)
        if other["spec"]["vmiName"] == vmi and status.is_active:
            raise MigrationError(
                f"VirtualMachineInstance {ns}/{vmi} already has an unfinished migration "
                f"{other['metadata']['name']} (phase {status.phase.value or 'Pending'}); wait "
                "for it to end or cancel it first"
            )


def cancel_migration(store: Store, namespace: str, name: str) -> dict[str, Any]:
    """Delete (cancel) a migration unless it is in post-copy, judged on the very revision that
    is deleted: an agent recording PostCopy in between makes the delete conflict and look again."""
    for _ in range(10):
        current = store.get(VMIM, namespace, name)
        refuse_cancel_in_post_copy(current)
        try:
            return store.delete(VMIM, namespace, name, current["metadata"]["resourceVersion"])
        except Conflict:
            continue
    raise Conflict(f"{VMIM}/{namespace}/{name} keeps changing; try again")


def refuse_cancel_in_post_copy(obj: dict[str, Any]) -> None:
    """The agent records PostCopy before it tells QEMU to switch, so this revision's mode is
    the truth: a cancel accepted here can still stop the migration."""
    status = MigrationStatus.of(obj)
    if status.in_post_copy and not status.finished:
        raise CancelRefused(
            f"migration {obj['metadata']['name']} is in post-copy and cannot be cancelled: the "
            "guest's memory is split between source and target; wait for it to end"
        )
