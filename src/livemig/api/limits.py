"""Limits on what livemig accepts, checked at the door (the API server, ``apply``, ``lint``,
``explain``) so nothing downstream — the store, the informers, QEMU — ever meets an input it
cannot take. Every limit is listed in the README's "Limits and safety".
"""

from __future__ import annotations

from typing import Any

from livemig.errors import InvalidInput

#: Largest request body (and object) the API takes: Kubernetes' own limit.
MAX_BODY_BYTES = 3 * 2**20
#: Deepest nesting of maps and lists in one object. A real KubeVirt object nests about 15 deep;
#: a much deeper one can only be an attack or a generator gone wrong, and would exhaust the
#: recursion of every JSON/YAML library and copy downstream.
MAX_DEPTH = 100
#: Values that YAML aliases (``*a``) may add to one document by expansion. Aliases are kept
#: shared while loading, but every consumer (validation, JSON) expands them, so a "billion
#: laughs" document must be refused before that.
MAX_ALIAS_EXPANSION = 100_000

#: Bounds of the integer types the settings have in KubeVirt's Go API and in QEMU.
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1
#: The most memory one VM (or node) may be given: x86-64 servers top out at 16–32 TiB, and QEMU
#: needs the size in a 64-bit byte count with room to spare.
MAX_MEMORY_BYTES = 16 * 2**40
#: QEMU's i440fx machine (what livemig starts) takes at most 255 vCPUs.
MAX_VCPUS = 255


class InvalidBody(InvalidInput):
    """A request body or document that breaks a limit or is not well-formed (HTTP 400)."""


def _where(path: list[str | int]) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out or "the top level"


def check_value(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Refuse nesting deeper than ``max_depth`` and strings that are not valid Unicode (lone
    surrogates, which JSON's ``\\ud800`` escapes and YAML's ``"\\ud800"`` can smuggle in and
    which no UTF-8 encoder downstream can write). Iterative, so a deep value cannot exhaust
    the stack here either."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            _check_text(item, path)
        elif isinstance(item, dict | list):
            if len(path) >= max_depth:
                raise InvalidBody(
                    f"{_where(path)}: nested deeper than {max_depth} levels; no object needs that"
                )
            if isinstance(item, dict):
                for key, child in item.items():
                    if isinstance(key, str):
                        _check_text(key, path, key=True)
                    stack.append((child, [*path, str(key)]))
            else:
                stack.extend((child, [*path, i]) for i, child in enumerate(item))


def _check_text(text: str, path: list[str | int], key: bool = False) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        what = "a key" if key else "a string"
        raise InvalidBody(
            f"{_where(path)}: {what} holds invalid Unicode (a lone surrogate "
            f"\\u{ord(text[exc.start]):04x} at character {exc.start}); use a real character"
        ) from None
