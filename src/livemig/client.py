"""The API client every component and the CLI use (httpx), raising livemig's own errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from livemig.api.limits import InvalidBody
from livemig.api.watch import WatchEvent
from livemig.clock import Clock, RealClock
from livemig.errors import (
    AlreadyExists,
    CancelRefused,
    Conflict,
    Gone,
    LivemigError,
    LoadError,
    MigrationError,
    NotFound,
    Problem,
    UsageError,
)

#: How often a write that lost a resourceVersion race is retried before giving up.
CONFLICT_RETRIES = 20
#: How often a read-change-write is retried after a transport failure (a timeout, a dropped
#: connection), waiting 0.5 s doubling in between: a store stalled on its disk, a restarting
#: server. Safe, because the change is applied afresh to a fresh read.
TRANSPORT_RETRIES = 5
#: Seconds to wait for an answer. Kubernetes' API server gives a request 60 s; an fsync was
#: seen to take 30 s on a busy virtual disk.
REQUEST_TIMEOUT = 60.0


class Unauthorized(UsageError):
    """The server wants a valid bearer token."""


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
    except ValueError:
        body = {"message": response.text}
    message, reason = str(body.get("message", "")), body.get("reason")
    code = response.status_code
    if code == 413 or (code == 400 and reason in ("InvalidBody", "BodyTooLarge")):
        raise InvalidBody(message)
    if code == 401:
        raise Unauthorized(f"{message} (check the token)")
    if code == 404:
        raise NotFound(message)
    if code == 409:
        errors: dict[str, type[LivemigError]] = {
            "Conflict": Conflict,
            "AlreadyExists": AlreadyExists,
            "CancelRefused": CancelRefused,
            "MigrationError": MigrationError,
        }
        raise errors.get(str(reason), Conflict)(message)
    if code == 410:
        raise Gone(message)
    if code == 422:
        raise LoadError(
            [
                Problem(
                    p["message"],
                    None,
                    None,
                    p.get("object"),
                    p.get("field"),
                    p.get("code", "LM002"),
                )
                for p in body.get("problems", [])
            ]
            or [Problem(message)]
        )
    raise LivemigError(f"server answered {code}: {message}")


class ApiClient:
    def __init__(
        self, url: str, token: str, timeout: float = REQUEST_TIMEOUT, clock: Clock | None = None
    ) -> None:
        self.url = url
        self.clock = clock or RealClock()
        self._http = httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @staticmethod
    def _params(namespace: str | None, **more: Any) -> dict[str, Any]:
        params = {k: v for k, v in more.items() if v is not None}
        if namespace is not None:
            params["namespace"] = namespace
        return params

    async def list(
        self, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        r = await self._http.get(
            f"/apis/{kind}", params=self._params(namespace, labelSelector=label_selector)
        )
        _raise_for(r)
        body = r.json()
        return body["items"], int(body["metadata"]["resourceVersion"])

    async def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        r = await self._http.get(f"/apis/{kind}/{name}", params=self._params(namespace))
        _raise_for(r)
        return dict(r.json())

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        r = await self._http.post(f"/apis/{obj['kind']}", json=obj)
        _raise_for(r)
        return dict(r.json())

    async def update(self, obj: dict[str, Any], status: bool = False) -> dict[str, Any]:
        """Replace ``obj`` (its status is kept as stored) or, with ``status``, only its status."""
        meta = obj["metadata"]
        r = await self._http.put(
            f"/apis/{obj['kind']}/{meta['name']}" + ("/status" if status else ""),
            params=self._params(meta.get("namespace")),
            json=obj,
        )
        _raise_for(r)
        return dict(r.json())

    async def delete(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        r = await self._http.delete(f"/apis/{kind}/{name}", params=self._params(namespace))
        _raise_for(r)
        return dict(r.json())

    async def modify(
        self,
        kind: str,
        name: str,
        namespace: str | None,
        change: Callable[[dict[str, Any]], dict[str, Any] | None],
        current: dict[str, Any] | None = None,
        status: bool = False,
    ) -> dict[str, Any] | None:
        """Read, change, write; on a resourceVersion conflict read again and redo the change.

        With ``status`` only the status ``change`` makes is written (the status subresource);
        otherwise everything but the status is.

        ``change`` returns the new object, or None to leave it as it is. ``current`` (a copy
        the caller may give away, e.g. from a watch cache) saves the first read; if it is
        stale the write conflicts and the object is read afresh. A change that declines on
        ``current`` is not checked against the server: the caller's watch brings any newer
        copy, and its next pass looks again."""
        transport_failures = 0
        for _ in range(CONFLICT_RETRIES):
            try:
                if current is None:
                    current = await self.get(kind, name, namespace)
                wanted = change(current)
                if wanted is None:
                    return current
                return await self.update(wanted, status)
            except Conflict:
                current = None
            except httpx.TransportError:
                transport_failures += 1
                if transport_failures > TRANSPORT_RETRIES:
                    raise
                await self.clock.sleep(0.5 * 2 ** (transport_failures - 1))
                current = None  # the write may have landed: look again before redoing it
        raise Conflict(f"{kind}/{name}: still conflicting after {CONFLICT_RETRIES} tries")

    async def watch(
        self,
        kind: str,
        since: int,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> AsyncIterator[WatchEvent]:
        params = self._params(
            namespace, watch="true", resourceVersion=since, labelSelector=label_selector
        )
        async with self._http.stream(
            "GET", f"/apis/{kind}", params=params, timeout=httpx.Timeout(10.0, read=None)
        ) as r:
            if not r.is_success:
                await r.aread()
                _raise_for(r)
            async for line in r.aiter_lines():
                if not line:
                    continue
                data = json.loads(line)
                if data["type"] == "ERROR":
                    raise Gone(data["object"]["message"])
                yield WatchEvent(int(data["revision"]), data["type"], data["object"])
