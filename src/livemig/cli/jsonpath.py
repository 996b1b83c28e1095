"""kubectl's ``-o jsonpath=TEMPLATE``: text with ``{expressions}`` — field paths
(``{.metadata.name}``, ``{.items[0].status.phase}``, ``{.items[*].metadata.name}``,
``{.metadata.labels['app.kubernetes.io/name']}``), string literals (``{"\\n"}``) and
``{range .items[*]}…{end}``. Enough of kubectl's grammar for scripts; anything else is an error
that says what it could not read."""

from __future__ import annotations

import json
import re
from typing import Any

from livemig.errors import UsageError

_TOKEN = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_-]+)        # .field
      | \[(?P<index>-?\d+|\*)\]             # [0] [-1] [*]
      | \[['"](?P<key>[^'"]+)['"]\]         # ['a.b/c']
    """,
    re.VERBOSE,
)


def _path(expr: str) -> list[tuple[str, str]]:
    expr = expr.strip()
    if expr in ("", "."):
        return []
    if expr.startswith("$"):
        expr = expr[1:]
    steps, pos = [], 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise UsageError(f"jsonpath: cannot read {expr[pos:]!r} in {{{expr}}}")
        if m.group("field") is not None:
            steps.append(("field", m.group("field")))
        elif m.group("index") is not None:
            steps.append(("index", m.group("index")))
        else:
            steps.append(("field", m.group("key")))
        pos = m.end()
    return steps


def _select(data: Any, steps: list[tuple[str, str]]) -> list[Any]:
    """Every value the path reaches ([*] fans out); missing fields reach nothing."""
    current = [data]
    for kind, arg in steps:
        out: list[Any] = []
        for value in current:
            if kind == "field":
                if isinstance(value, dict) and arg in value:
                    out.append(value[arg])
            elif arg == "*":
                if isinstance(value, list):
                    out.extend(value)
                elif isinstance(value, dict):
                    out.extend(value.values())
            elif isinstance(value, list):
                i = int(arg)
                if -len(value) <= i < len(value):
                    out.append(value[i])
        current = out
    return current


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _parts(template: str) -> list[tuple[str, str]]:
    """The template as ("text", …) and ("expr", …) pieces."""
    parts, pos = [], 0
    while pos < len(template):
        start = template.find("{", pos)
        if start < 0:
            parts.append(("text", template[pos:]))
            break
        if start > pos:
            parts.append(("text", template[pos:start]))
        end = template.find("}", start)
        if end < 0:
            raise UsageError(f"jsonpath: unclosed '{{' in {template!r}")
        parts.append(("expr", template[start + 1 : end].strip()))
        pos = end + 1
    return parts


def render(template: str, data: Any) -> str:
    """The template filled in from ``data``."""
    template = template.strip()
    if template.startswith("'") and template.endswith("'") and len(template) > 1:
        template = template[1:-1]
    parts = _parts(template)
    out, stopped = _render(parts, 0, data, template)
    if stopped < len(parts):
        raise UsageError(f"jsonpath: {{end}} without {{range}} in {template!r}")
    return out


def _render(parts: list[tuple[str, str]], i: int, data: Any, template: str) -> tuple[str, int]:
    out: list[str] = []
    while i < len(parts):
        kind, value = parts[i]
        if kind == "text":
            out.append(value)
        elif value == "end":
            return "".join(out), i
        elif value.startswith("range "):
            items = _select(data, _path(value[len("range ") :]))
            body_end = None
            for item in items:
                text, body_end = _render(parts, i + 1, item, template)
                out.append(text)
            if body_end is None:  # nothing to range over: still skip the body
                _, body_end = _render(parts, i + 1, {}, template)
            if body_end >= len(parts):
                raise UsageError(f"jsonpath: {{range}} without {{end}} in {template!r}")
            i = body_end
        elif value[:1] in ("'", '"'):
            try:
                out.append(json.loads(value) if value[0] == '"' else value[1:-1])
            except ValueError as exc:
                raise UsageError(f"jsonpath: cannot read the literal {value}") from exc
        else:
            out.append(" ".join(_text(v) for v in _select(data, _path(value))))
        i += 1
    return "".join(out), i
