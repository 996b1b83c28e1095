"""Reading request bodies within the limits of :mod:`livemig.api.limits`.

A body declared larger than the limit is refused before a byte of it is read; one that turns
out larger (chunked) is refused as soon as it passes the limit. JSON with duplicate keys, invalid
UTF-8, lone surrogates or absurd nesting is refused with what and where, before any of it can
reach validation, the store or a watcher.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from livemig.api.limits import MAX_BODY_BYTES, MAX_DEPTH, InvalidBody, check_value
from livemig.api.quantity import short_bytes

#: Declares the body in /openapi.json (the endpoints read it themselves, to enforce limits).
OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


class BodyTooLarge(InvalidBody):
    """The request body is over MAX_BODY_BYTES (HTTP 413)."""


def too_large(size: int | None) -> BodyTooLarge:
    said = f"the body is {short_bytes(size)}" if size is not None else "the body is too large"
    return BodyTooLarge(
        f"{said}; the API takes at most {short_bytes(MAX_BODY_BYTES)} per request "
        "(Kubernetes' limit): split the input into smaller objects"
    )


def declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


async def read_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object, or InvalidBody/BodyTooLarge saying what is wrong."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large(declared_length(request))
        chunks.append(chunk)
    return parse_object(b"".join(chunks))


def parse_object(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidBody(f"the body is not UTF-8 (invalid byte at offset {exc.start})") from None
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        raise InvalidBody(
            f'duplicate key "{exc.args[0]}" in a JSON object: each key may appear once'
        ) from None
    except json.JSONDecodeError as exc:
        raise InvalidBody(
            f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InvalidBody(f"nested deeper than {MAX_DEPTH} levels; no object needs that") from None
    if not isinstance(data, dict):
        raise InvalidBody("the body must be a JSON object (one Kubernetes-style object)")
    check_value(data)
    return data
