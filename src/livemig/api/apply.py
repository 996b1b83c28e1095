"""``apply`` as ``kubectl apply`` does it: a three-way merge of what the user applies now, what
they applied last time (kept in an annotation) and what the server holds.

- a field the user sets now is set (maps merge key by key; lists and scalars are replaced);
- a field the user set last time and has dropped now is removed — so removing a key from
  ``liveMigrationConfig`` restores its default, as the document promises;
- everything else on the stored object stays: labels an agent put on its Node, fields other
  tools wrote, and the whole status.

What a dump carries that the server owns (uid, resourceVersion, creationTimestamp, generation,
managedFields, status) is not part of what the user applies, so applying ``oc get -o yaml``
output never moves a VM or rewrites history.
"""

from __future__ import annotations

import copy
import json
from enum import StrEnum
from typing import Any

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
SERVER_SET_METADATA = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)


class Verb(StrEnum):
    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"


def applied_configuration(obj: dict[str, Any]) -> dict[str, Any]:
    """What the user applies: the object less status, server-set metadata and the
    last-applied annotation itself."""
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.setdefault("metadata", {})
    for key in SERVER_SET_METADATA:
        meta.pop(key, None)
    annotations = meta.get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(LAST_APPLIED, None)
        if not annotations:
            meta.pop("annotations")
    return out


def _last_applied(current: dict[str, Any]) -> dict[str, Any] | None:
    raw = ((current.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not raw:
        return None
    try:
        last = json.loads(raw)
    except ValueError:
        return None  # someone wrote nonsense there: merge as if applied for the first time
    return last if isinstance(last, dict) else None


def three_way_merge(
    current: dict[str, Any], last: dict[str, Any] | None, desired: dict[str, Any]
) -> dict[str, Any]:
    """``current`` with ``desired`` set and what only ``last`` had removed (a new dict)."""
    out = copy.deepcopy(current)
    for key, value in desired.items():
        here = out.get(key)
        if isinstance(value, dict) and isinstance(here, dict):
            before = last.get(key) if last else None
            out[key] = three_way_merge(here, before if isinstance(before, dict) else None, value)
        else:
            out[key] = copy.deepcopy(value)
    for key in last or {}:
        if key not in desired:
            out.pop(key, None)
    return out


def with_last_applied(obj: dict[str, Any], applied: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    annotations = out.setdefault("metadata", {}).setdefault("annotations", {})
    annotations[LAST_APPLIED] = json.dumps(applied, sort_keys=True, separators=(",", ":"))
    return out


def to_create(obj: dict[str, Any]) -> dict[str, Any]:
    """The object to create for a first apply."""
    applied = applied_configuration(obj)
    return with_last_applied(applied, applied)


def to_update(current: dict[str, Any], obj: dict[str, Any]) -> tuple[dict[str, Any], Verb]:
    """The object to write over ``current``, and whether that changes anything."""
    applied = applied_configuration(obj)
    desired = with_last_applied(applied, applied)
    merged = three_way_merge(current, _last_applied(current), desired)
    merged["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
    comparable = [{k: v for k, v in o.items() if k != "status"} for o in (merged, current)]
    verb = Verb.UNCHANGED if comparable[0] == comparable[1] else Verb.CONFIGURED
    return merged, verb
