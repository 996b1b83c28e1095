"""Conditions and timestamps in KubeVirt's shapes (the migration and VMI lifecycles are in
:mod:`livemig.api.lifecycle`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def timestamp(when: datetime) -> str:
    """RFC 3339 with microseconds: sorts in creation order even within one second."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def epoch_seconds(stamp: object) -> float | None:
    """A stored timestamp as Unix seconds; None if absent or unreadable."""
    if not stamp:
        return None
    try:
        return parse_timestamp(str(stamp)).timestamp()
    except ValueError:
        return None


def age(stamp: object, now: float) -> str:
    """How long ago ``stamp`` was, as kubectl says it: 45s, 5m12s, 27m, 3h5m, 26h, 12d
    (``<unknown>`` for no readable time); ``now`` in Unix seconds."""
    then = epoch_seconds(stamp)
    if then is None:
        return "<unknown>"
    seconds = max(int(now - then), 0)
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"


def condition(
    status: dict[str, Any], kind: str, value: str, reason: str, message: str
) -> dict[str, Any]:
    """Set one condition (by type) in ``status.conditions``; return ``status``."""
    conditions = [c for c in status.get("conditions", []) if c.get("type") != kind]
    conditions.append({"type": kind, "status": value, "reason": reason, "message": message})
    status["conditions"] = conditions
    return status


def condition_changed(
    status: dict[str, Any], kind: str, value: str, reason: str, message: str
) -> bool:
    """Set one condition like :func:`condition`; True if that changed anything (so a write, and
    an event, is news)."""
    before = [dict(c) for c in status.get("conditions", [])]
    condition(status, kind, value, reason, message)
    return bool(status["conditions"] != before)


def node_ready(node: dict[str, Any]) -> bool:
    for c in (node.get("status") or {}).get("conditions", []):
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def last_heartbeat(node: dict[str, Any]) -> str | None:
    """The Ready condition's lastHeartbeatTime as the agent wrote it (None if it never did)."""
    for c in (node.get("status") or {}).get("conditions", []):
        if c.get("type") == "Ready" and c.get("lastHeartbeatTime"):
            return str(c["lastHeartbeatTime"])
    return None
