"""Recording Events (Kubernetes' core/v1 shape) about objects, as kubectl users expect them.

The same kind of event about the same object — same type and reason — is one Event object whose
``count``, ``lastTimestamp`` and ``message`` (the latest) are updated, so a failure retried every
few minutes for a day, or an unschedulable VM whose "node-1 has 1.9Gi free" keeps changing, is
one line in ``livemig get events``, not hundreds.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import Any

from livemig.api.models import EventType
from livemig.api.status import timestamp
from livemig.client import ApiClient
from livemig.clock import Clock
from livemig.errors import AlreadyExists, LivemigError, NotFound

log = logging.getLogger(__name__)

EVENT = "Event"
#: Longest object name (DNS-1123 subdomain).
_MAX_NAME = 253


def event_name(involved: dict[str, Any], event_type: str, reason: str) -> str:
    """A stable name for one (object, type, reason): repeats find the same Event."""
    meta = involved.get("metadata") or {}
    identity = "\0".join(
        str(x)
        for x in (
            involved.get("kind"),
            meta.get("namespace"),
            meta.get("name"),
            meta.get("uid"),
            event_type,
            reason,
        )
    )
    digest = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    head = str(meta.get("name") or "object")[: _MAX_NAME - len(digest) - 1].rstrip(".-")
    return f"{head}.{digest}"


class EventRecorder:
    """Writes Events for one component (``livemig-controller``, ``livemig-agent/node-1``)."""

    def __init__(self, client: ApiClient, component: str, clock: Clock) -> None:
        self.client = client
        self.component = component
        self.clock = clock

    async def record(
        self, involved: dict[str, Any], event_type: EventType, reason: str, message: str
    ) -> None:
        """Record (or count again) an event; never raises: events are best effort."""
        try:
            await self._record(involved, event_type, reason, message)
        except LivemigError as exc:
            log.warning("%s: could not record event %s: %s", self.component, reason, exc)
        except Exception:  # an event must never cost the caller its pass
            log.exception("%s: could not record event %s", self.component, reason)

    async def _record(
        self, involved: dict[str, Any], event_type: EventType, reason: str, message: str
    ) -> None:
        meta = involved.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        name = event_name(involved, event_type.value, reason)
        now = timestamp(datetime.fromtimestamp(self.clock.wall(), UTC))
        event = {
            "apiVersion": "v1",
            "kind": EVENT,
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {
                k: v
                for k, v in {
                    "kind": involved.get("kind"),
                    "namespace": meta.get("namespace"),
                    "name": meta.get("name"),
                    "uid": meta.get("uid"),
                }.items()
                if v
            },
            "reason": reason,
            "message": message,
            "type": event_type.value,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": self.component},
        }
        try:
            await self.client.create(event)
            return
        except AlreadyExists:
            pass

        def again(o: dict[str, Any]) -> dict[str, Any]:
            o["count"] = int(o.get("count") or 1) + 1
            o["lastTimestamp"] = now
            o["message"] = message
            return o

        try:
            await self.client.modify(EVENT, name, namespace, again)
        except NotFound:  # deleted in between: start counting again
            await self.client.create(event)
