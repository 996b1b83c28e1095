"""One object's share of a reconcile pass, isolated: its failure is its own.

A component (the controller, a node agent) runs each object's work through :class:`PerObject`.
When the work raises, the object gets a ``Synchronized=False`` condition saying why, in words,
and a Warning event; the work is retried with exponential backoff (1 s doubling to 5 min), or at
once when the object is edited; and the pass goes on with the other objects. When the work
succeeds again the condition is removed. Kubernetes controllers behave the same way (a
rate-limited work queue per key), which is what people paged at night expect.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from livemig.api.models import EventType
from livemig.api.status import condition_changed
from livemig.clock import Clock
from livemig.errors import LivemigError, NotFound
from livemig.events import EventRecorder
from livemig.informer import Informer

log = logging.getLogger(__name__)

SYNCHRONIZED = "Synchronized"
BACKOFF_BASE = 1.0
BACKOFF_CAP = 300.0

#: kind, namespace or "", name, the step: one object's steps back off apart (a failing drain of a
#: node must not hold back that node's health check).
ObjectKey = tuple[str, str, str, str]


@dataclass(frozen=True, slots=True)
class Failure:
    attempts: int
    next_try: float
    fingerprint: str
    reason: str  # the step that failed: its condition is cleared on success


def fingerprint(obj: dict[str, Any]) -> str:
    """What the user controls (spec, labels, annotations): an edit retries at once."""
    meta = obj.get("metadata") or {}
    try:
        text = json.dumps(
            [obj.get("spec"), meta.get("labels"), meta.get("annotations")],
            sort_keys=True,
            default=str,
        )
    except (ValueError, TypeError, RecursionError):
        text = str(meta.get("resourceVersion"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def describe(exc: BaseException, component: str) -> str:
    """The failure in words: our own errors say what and where; anything else is a bug."""
    if isinstance(exc, LivemigError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"internal error ({type(exc).__name__}: {exc}); see the {component} log"


def _key(kind: str, obj: dict[str, Any], reason: str) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""), reason


class PerObject:
    def __init__(
        self,
        informer: Informer,
        events: EventRecorder,
        clock: Clock,
        base: float = BACKOFF_BASE,
        cap: float = BACKOFF_CAP,
    ) -> None:
        self.informer = informer
        self.events = events
        self.clock = clock
        self.base = base
        self.cap = cap
        self.failures: dict[ObjectKey, Failure] = {}

    @property
    def component(self) -> str:
        return self.events.component

    async def run(
        self, kind: str, obj: dict[str, Any], reason: str, work: Callable[[], Awaitable[Any]]
    ) -> bool:
        """Run ``work`` for ``obj`` unless it is backing off; True if it ran and succeeded.

        ``reason`` names the step (``Unschedulable``, ``StartFailed``…) in the condition and
        event written if it fails."""
        key = _key(kind, obj, reason)
        failure = self.failures.get(key)
        # The fingerprint (a JSON dump and a hash) is paid only by objects that have failed.
        edited = failure is not None and failure.fingerprint != fingerprint(obj)
        if failure is not None and not edited and self.clock.now() < failure.next_try:
            return False
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            attempts = 1 if failure is None or edited else failure.attempts + 1
            delay = min(self.cap, self.base * 2 ** (attempts - 1))
            message = describe(exc, self.component)
            if not isinstance(exc, LivemigError):
                log.exception("%s: %s/%s/%s: %s", self.component, *key)
            else:
                log.warning("%s: %s %s/%s: %s", self.component, kind, key[1], key[2], message)
            next_try = self.clock.now() + delay
            self.failures[key] = Failure(attempts, next_try, fingerprint(obj), reason)
            await self.report(kind, obj, reason, f"{message} (retrying in {delay:.0f} s)")
            await self.events.record(obj, EventType.WARNING, reason, message)
            return False
        if failure is not None:
            del self.failures[key]
            await self._clear(kind, obj, failure.reason)
        return True

    def forget(self, kind: str, obj: dict[str, Any]) -> None:
        """The object is gone: drop its backoff."""
        gone = _key(kind, obj, "")[:3]
        for key in [k for k in self.failures if k[:3] == gone]:
            del self.failures[key]

    async def report(self, kind: str, obj: dict[str, Any], reason: str, message: str) -> None:
        """Set ``Synchronized=False`` with ``reason`` and ``message`` (best effort)."""

        def mark(o: dict[str, Any]) -> dict[str, Any] | None:
            st = o.setdefault("status", {})
            return o if condition_changed(st, SYNCHRONIZED, "False", reason, message) else None

        await self._write(kind, obj, mark)

    async def _clear(self, kind: str, obj: dict[str, Any], reason: str) -> None:
        def unmark(o: dict[str, Any]) -> dict[str, Any] | None:
            st = o.get("status") or {}
            conditions = st.get("conditions", [])
            kept = [
                c
                for c in conditions
                if not (c.get("type") == SYNCHRONIZED and c.get("reason") == reason)
            ]
            if len(kept) == len(conditions):
                return None
            st["conditions"] = kept
            return o

        await self._write(kind, obj, unmark)

    async def _write(
        self, kind: str, obj: dict[str, Any], change: Callable[[dict[str, Any]], Any]
    ) -> None:
        _, namespace, name, _ = _key(kind, obj, "")
        try:
            await self.informer.modify(kind, name, namespace or None, change, status=True)
        except NotFound:
            pass
        except Exception as exc:  # the report must not fail the pass either
            log.warning(
                "%s: cannot write the condition of %s %s: %s", self.component, kind, name, exc
            )
