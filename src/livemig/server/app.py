"""The API server: Kubernetes-style CRUD, list with label selectors and watch, over a Store.

Paths (``KIND`` is a kind name, plural or short name: ``vmis``, ``migrations``, ``policy``…)::

    GET    /healthz                                  no token needed
    GET    /metrics                                  Prometheus text (livemig.server.metrics)
    GET    /apis/KIND[?namespace=NS&labelSelector=S]  list ({"items": [...], "metadata": {...}})
    GET    /apis/KIND?watch=true&resourceVersion=N     newline-delimited JSON change events
    POST   /apis/KIND                                 create
    GET    /apis/KIND/NAME[?namespace=NS]              read
    PUT    /apis/KIND/NAME[?namespace=NS]              replace (metadata.resourceVersion must be
                                                       current: 409 Conflict otherwise); the
                                                       stored status is kept
    PUT    /apis/KIND/NAME/status[?namespace=NS]       replace only the status (the subresource
                                                       livemig's own components write)
    DELETE /apis/KIND/NAME[?namespace=NS]              delete (a migration: cancel it)

Every object is validated with the same models and messages as ``livemig lint``; a bad one is
answered 422 with every problem, and nothing is stored.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from livemig.api.limits import MAX_BODY_BYTES, InvalidBody
from livemig.api.models import Resource, resolve_kind
from livemig.clock import Clock, RealClock
from livemig.errors import (
    AlreadyExists,
    Conflict,
    Gone,
    LivemigError,
    LoadError,
    MigrationError,
    NotFound,
    UsageError,
)
from livemig.policy import DefaultsProfile
from livemig.server.body import (
    OPENAPI_BODY,
    BodyTooLarge,
    declared_length,
    read_object,
    too_large,
)
from livemig.server.metrics import metrics_registry
from livemig.server.selectors import Requirement, matches_selector, parse_selector
from livemig.server.web.console import mount_console
from livemig.server.writes import cancel_migration, checked, one_migration_at_a_time
from livemig.store import Store, Subresource, object_key

VMIM = "VirtualMachineInstanceMigration"
T = TypeVar("T")

_STATUS: dict[type[LivemigError], int] = {
    BodyTooLarge: 413,
    InvalidBody: 400,
    NotFound: 404,
    AlreadyExists: 409,
    Conflict: 409,
    MigrationError: 409,
    Gone: 410,
    LoadError: 422,
    UsageError: 400,
}


def _kind(name: str) -> type[Resource]:
    cls = resolve_kind(name)
    if cls is None:
        raise NotFound(f"no kind {name!r} here (try vms, vmis, migrations, policies, nodes)")
    return cls


def _namespace(cls: type[Resource], namespace: str | None) -> str:
    return (namespace or "default") if cls.NAMESPACED else ""


async def off(call: Callable[..., T], *args: Any) -> T:
    """Run a blocking store call in a worker thread: a slow disk must not stall the loop."""
    return await asyncio.to_thread(call, *args)


def create_app(
    store: Store,
    token: str,
    stopping: asyncio.Event | None = None,
    clock: Clock | None = None,
    defaults: DefaultsProfile = DefaultsProfile.DOCUMENT,
) -> FastAPI:
    """The API over ``store``; when ``stopping`` is set, open watch streams end at once (a
    server shutting down must not wait for its clients to hang up). ``defaults`` fill unset
    cluster settings where the metrics need them (the parallel limits)."""
    stopping = stopping or asyncio.Event()
    registry, transitions = metrics_registry(store, (clock or RealClock()).wall(), defaults)
    app = FastAPI(
        title="livemig",
        description="Live-migration control plane for QEMU/KVM VMs, KubeVirt-style objects.",
        version="0.1.0",
    )

    migration_creates = asyncio.Lock()

    @app.middleware("http")
    async def bearer_token(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        # The console (/ and /ui/…) checks its own session cookie; everything else the token.
        if path != "/healthz" and path != "/" and not path.startswith("/ui/"):
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return JSONResponse(
                    {"reason": "Unauthorized", "message": "a valid bearer token is required"},
                    status_code=401,
                )
        length = declared_length(request)
        if length is not None and length > MAX_BODY_BYTES:
            # Refused before a byte is read: a 50 MB body costs the server nothing.
            error = too_large(length)
            return JSONResponse(
                {"reason": type(error).__name__, "message": str(error)}, status_code=413
            )
        return await call_next(request)

    @app.exception_handler(LivemigError)
    async def livemig_error(request: Request, exc: LivemigError) -> JSONResponse:
        status = next((code for cls, code in _STATUS.items() if isinstance(exc, cls)), 500)
        body: dict[str, Any] = {"reason": type(exc).__name__, "message": str(exc)}
        if isinstance(exc, LoadError):
            body["message"] = "; ".join(str(p) for p in exc.problems)
            body["problems"] = [
                {"object": p.object, "field": p.field, "message": p.message, "code": p.code}
                for p in exc.problems
            ]
        return JSONResponse(body, status_code=status)

    @app.get("/healthz", response_class=PlainTextResponse)
    async def healthz() -> str:
        return "ok"

    @app.get("/metrics", response_model=None)
    async def metrics() -> Response:
        """Prometheus text format (livemig.server.metrics); the bearer token is required."""
        return Response(await off(generate_latest, registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/apis/{kind}", response_model=None)
    async def list_or_watch(
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = Query(None, alias="labelSelector"),
        watch: bool = False,
        resource_version: int | None = Query(None, alias="resourceVersion"),
    ) -> Response:
        cls = _kind(kind)
        selector = parse_selector(label_selector or "")
        if watch:
            since = resource_version if resource_version is not None else await off(store.revision)
            return StreamingResponse(
                _until(stopping, _watch(store, cls, namespace, selector, since)),
                media_type="application/x-ndjson",
            )
        items, rev = await off(store.list, cls.KIND, namespace if cls.NAMESPACED else None)
        items = [o for o in items if matches_selector(selector, _labels(o))]
        return _json(
            {
                "apiVersion": "v1",
                "kind": "List",
                "metadata": {"resourceVersion": str(rev)},
                "items": items,
            }
        )

    @app.post("/apis/{kind}", status_code=201, response_model=None, openapi_extra=OPENAPI_BODY)
    async def create(kind: str, request: Request) -> Response:
        cls = _kind(kind)
        obj = checked(cls, await read_object(request))
        obj.pop("status", None)  # a subresource: never set by a create (Kubernetes does so too)
        if cls.KIND != "VirtualMachineInstanceMigration":
            return _json(await off(store.create, obj), 201)
        async with migration_creates:  # the check and the create, as one step
            await off(one_migration_at_a_time, store, obj)
            return _json(await off(store.create, obj), 201)

    @app.get("/apis/{kind}/{name}", response_model=None)
    async def read(kind: str, name: str, namespace: str | None = None) -> Response:
        cls = _kind(kind)
        return _json(await off(store.get, cls.KIND, _namespace(cls, namespace), name))

    async def _replace(
        kind: str, name: str, request: Request, namespace: str | None, subresource: Subresource
    ) -> Response:
        cls = _kind(kind)
        obj = checked(cls, await read_object(request))
        if object_key(obj) != (cls.KIND, _namespace(cls, namespace), name):
            raise UsageError(f"the body is {object_key(obj)}, not {cls.KIND} {name} in the URL")
        stored = await off(store.update, obj, subresource)
        if cls.KIND == VMIM and subresource == "status":
            transitions.observe(stored)
        return _json(stored)

    @app.put("/apis/{kind}/{name}", response_model=None, openapi_extra=OPENAPI_BODY)
    async def replace(
        kind: str, name: str, request: Request, namespace: str | None = None
    ) -> Response:
        return await _replace(kind, name, request, namespace, None)

    @app.put("/apis/{kind}/{name}/status", response_model=None, openapi_extra=OPENAPI_BODY)
    async def replace_status(
        kind: str, name: str, request: Request, namespace: str | None = None
    ) -> Response:
        return await _replace(kind, name, request, namespace, "status")

    @app.delete("/apis/{kind}/{name}", response_model=None)
    async def delete(kind: str, name: str, namespace: str | None = None) -> Response:
        cls = _kind(kind)
        ns = _namespace(cls, namespace)
        if cls.KIND == "VirtualMachineInstanceMigration":
            return _json(await off(cancel_migration, store, ns, name))
        return _json(await off(store.delete, cls.KIND, ns, name))

    mount_console(app, store, token, stopping, clock or RealClock(), defaults, off, _until)
    return app


def _json(body: dict[str, Any], status: int = 200) -> Response:
    """Objects are plain JSON already: send them as they are, not through FastAPI's encoder
    (which walks every value and was the server's biggest cost)."""
    return Response(
        json.dumps(body, separators=(",", ":")), status_code=status, media_type="application/json"
    )


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


async def _until(stopping: asyncio.Event, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``stream``'s items until ``stopping`` is set."""
    stop = asyncio.ensure_future(stopping.wait())
    iterator = aiter(stream)
    try:
        while True:
            item = asyncio.ensure_future(anext(iterator))
            await asyncio.wait({item, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not item.done():
                item.cancel()
                await asyncio.gather(item, return_exceptions=True)
                return
            try:
                yield item.result()
            except StopAsyncIteration:
                return
    finally:
        stop.cancel()
        await asyncio.gather(stop, return_exceptions=True)
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


async def _watch(
    store: Store,
    cls: type[Resource],
    namespace: str | None,
    selector: list[Requirement],
    since: int,
) -> AsyncIterator[bytes]:
    try:
        async for event in store.watch(since, cls.KIND):
            meta = event.object.get("metadata") or {}
            if namespace is not None and cls.NAMESPACED and meta.get("namespace") != namespace:
                continue
            if not matches_selector(selector, _labels(event.object)):
                continue
            yield json.dumps(event.as_dict()).encode() + b"\n"
    except Gone as exc:
        yield json.dumps({"type": "ERROR", "object": {"code": 410, "message": str(exc)}}).encode()
