"""Kubernetes equality-based label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``."""

from __future__ import annotations

from collections.abc import Mapping

from livemig.errors import UsageError

Requirement = tuple[str, str, str | None]  # (key, operator, value)


def parse_selector(text: str) -> list[Requirement]:
    out: list[Requirement] = []
    for raw in filter(None, (part.strip() for part in text.split(","))):
        if "!=" in raw:
            key, value = raw.split("!=", 1)
            out.append((key.strip(), "!=", value.strip()))
        elif "==" in raw or "=" in raw:
            key, value = raw.split("==", 1) if "==" in raw else raw.split("=", 1)
            out.append((key.strip(), "=", value.strip()))
        elif raw.startswith("!"):
            out.append((raw[1:].strip(), "!", None))
        else:
            out.append((raw, "exists", None))
        if not out[-1][0]:
            raise UsageError(f"label selector {text!r}: {raw!r} has no key")
    return out


def matches_selector(selector: list[Requirement], labels: Mapping[str, str]) -> bool:
    for key, op, value in selector:
        if op == "=" and labels.get(key) != value:
            return False
        if op == "!=" and labels.get(key) == value:
            return False
        if op == "exists" and key not in labels:
            return False
        if op == "!" and key in labels:
            return False
    return True
