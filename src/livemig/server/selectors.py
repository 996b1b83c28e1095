"""Kubernetes label selectors, both kinds: equality-based (``a=b``, ``a==b``, ``a!=b``) and
set-based (``a in (x,y)``, ``a notin (x,y)``, ``a``, ``!a``), joined by commas. Anything else
is an error that says where, never a selector that silently matches nothing."""

from __future__ import annotations

import re
from collections.abc import Mapping

from livemig.errors import UsageError

Requirement = tuple[str, str, tuple[str, ...]]  # (key, operator, values)

# A label key: an optional DNS prefix and a name; a value: empty or a name (Kubernetes' rules).
_KEY = r"(?:[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s*\((.*)\)$")
_EQUALITY = re.compile(rf"^({_KEY})\s*(==|=|!=)\s*({_VALUE})$")
_EXISTS = re.compile(rf"^(!?)\s*({_KEY})$")


def _requirements(text: str) -> list[str]:
    """Split on the commas that are not inside parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise UsageError(f"label selector {text!r}: unbalanced ')'")
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth:
        raise UsageError(f"label selector {text!r}: unbalanced '('")
    parts.append("".join(current))
    return [p.strip() for p in parts]


def parse_selector(text: str) -> list[Requirement]:
    out: list[Requirement] = []
    for raw in _requirements(text):
        if not raw:
            if text.strip():
                raise UsageError(f"label selector {text!r}: an empty requirement (two commas?)")
            continue
        if m := _SET.match(raw):
            values = tuple(v.strip() for v in m.group(3).split(","))
            bad = [v for v in values if not re.fullmatch(_VALUE, v)]
            if not values or bad or values == ("",):
                raise UsageError(
                    f"label selector {text!r}: {raw!r}: the set needs label values, "
                    "like 'tier in (web,db)'"
                )
            out.append((m.group(1), m.group(2), values))
        elif m := _EQUALITY.match(raw):
            op = "!=" if m.group(2) == "!=" else "="
            out.append((m.group(1), op, (m.group(3),)))
        elif m := _EXISTS.match(raw):
            out.append((m.group(2), "!" if m.group(1) else "exists", ()))
        else:
            raise UsageError(
                f"label selector {text!r}: cannot read {raw!r}; use key=value, key!=value, "
                "key in (a,b), key notin (a,b), key or !key"
            )
    return out


def matches_selector(selector: list[Requirement], labels: Mapping[str, str]) -> bool:
    for key, op, values in selector:
        present = key in labels
        if op == "=" and labels.get(key) != values[0]:
            return False
        if op == "!=" and present and labels[key] == values[0]:
            return False
        if op == "in" and (not present or labels[key] not in values):
            return False
        if op == "notin" and present and labels[key] in values:
            return False
        if op == "exists" and not present:
            return False
        if op == "!" and present:
            return False
    return True
