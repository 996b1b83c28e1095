"""Load KubeVirt objects from files, folders and stdin — all or nothing, every problem listed.

The happy path parses with libyaml and validates with pydantic and keeps no per-node line
information (a 100,000-VMI dump must load in seconds). Only when a document has problems is its
file composed a second time to find the line of each bad field.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import yaml
from pydantic import ValidationError

from livemig.api.errors_text import describe_validation_error, format_path
from livemig.api.models import KINDS, KNOWN_UNUSED_KINDS, Resource
from livemig.api.yamlparse import YamlSyntaxError, parse
from livemig.bulk import gc_paused
from livemig.errors import LoadError, Problem

R = TypeVar("R", bound=Resource)
YAML_SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "-"
_Composer: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an object came from: file, YAML document index, and index inside a ``kind: List``."""

    file: str
    document: int
    item: int | None = None

    def path_prefix(self) -> tuple[str | int, ...]:
        return () if self.item is None else ("items", self.item)


@dataclass(frozen=True, slots=True)
class Loaded:
    obj: Resource
    origin: Origin


@dataclass(frozen=True, slots=True)
class Skipped:
    """An object of a kind livemig does not use; kept out of the way, reported by lint."""

    kind: str
    ref: str
    origin: Origin


@dataclass
class LoadResult:
    objects: list[Loaded] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def of_kind(self, cls: type[R]) -> list[R]:
        return [o.obj for o in self.objects if isinstance(o.obj, cls)]


def iter_files(paths: Iterable[str]) -> Iterator[tuple[str, Problem | None]]:
    """Expand folders recursively (sorted) into YAML/JSON files; ``-`` is stdin."""
    for raw in paths:
        if raw == STDIN:
            yield STDIN, None
            continue
        p = Path(raw)
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in YAML_SUFFIXES
            )
            if not found:
                yield (
                    raw,
                    Problem("folder holds no .yaml, .yml or .json file", file=raw, code="LM004"),
                )
            for f in found:
                yield str(f), None
        elif p.is_file():
            yield raw, None
        else:
            yield raw, Problem("no such file or folder", file=raw, code="LM004")


def load_paths(paths: Sequence[str], stdin: IO[str] | None = None) -> LoadResult:
    """Load every object in ``paths``; raise ``LoadError`` listing every problem if any."""
    result = LoadResult()
    problems: list[Problem] = []
    for name, problem in iter_files(paths):
        if problem:
            problems.append(problem)
            continue
        try:
            text = (stdin or sys.stdin).read() if name == STDIN else Path(name).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(f"cannot read: {exc}", file=name, code="LM004"))
            continue
        label = "<stdin>" if name == STDIN else name
        problems.extend(load_text(text, label, result))
    problems.extend(_duplicate_objects(result))
    if problems:
        raise LoadError(problems)
    return result


def load_text(text: str, file: str, into: LoadResult) -> list[Problem]:
    """Parse one file's text into ``into``; return its problems (the caller decides to fail)."""
    problems: list[Problem] = []
    lines: _LineFinder | None = None
    try:
        with gc_paused():
            for doc in parse(text):
                origin = Origin(file, doc.document, doc.item)
                ref = _raw_ref(doc.data)
                problems += [
                    Problem(
                        f"duplicate key {d.key!r} (first at line {d.first_line})",
                        file,
                        d.line,
                        ref,
                        code="LM001",
                    )
                    for d in doc.duplicates
                ]
                bad = _load_object(doc.data, origin, into)
                if bad:
                    lines = lines or _LineFinder(text)
                    for prob_field, loc, message in bad:
                        at = lines.line_of(origin, loc)
                        problems.append(Problem(message, file, at, ref, prob_field))
    except YamlSyntaxError as exc:
        what = "YAML refused" if exc.refused else "YAML syntax error"
        problems.append(Problem(f"{what}: {exc.message}", file, exc.line, code="LM001"))
    return sorted(problems, key=lambda p: p.line or 0)


def _raw_ref(raw: Any) -> str | None:
    if not isinstance(raw, dict):
        return None
    kind = raw.get("kind") or "<no kind>"
    meta = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    name = meta.get("name") or "<no name>"
    cls = KINDS.get(str(kind))
    ns = meta.get("namespace")
    if cls is not None:
        ns = (ns or "default") if cls.NAMESPACED else None
    return f"{kind}/{ns}/{name}" if ns else f"{kind}/{name}"


_Bad = tuple[str | None, tuple[str | int, ...], str]  # field, loc, message


def _load_object(raw: Any, origin: Origin, into: LoadResult) -> list[_Bad]:
    if not isinstance(raw, dict):
        return [(None, (), "an object must be a YAML mapping")]
    kind = raw.get("kind")
    missing: list[_Bad] = [
        (k, (k,), "required field is missing") for k in ("apiVersion", "kind") if not raw.get(k)
    ]
    if missing:
        return missing
    if not isinstance(kind, str):
        return [("kind", ("kind",), f"expected a string, got {kind!r}")]
    if kind.endswith("List") and "items" in raw:  # a List whose items are not a list
        return [("items", ("items",), "expected a list of objects")]
    cls = KINDS.get(kind)
    if cls is None:
        close = (
            []
            if kind in KNOWN_UNUSED_KINDS
            else difflib.get_close_matches(kind, KINDS, n=1, cutoff=0.8)
        )
        if close:
            return [("kind", ("kind",), f"unknown kind {kind!r} (did you mean {close[0]}?)")]
        into.skipped.append(Skipped(kind, _raw_ref(raw) or kind, origin))
        return []
    try:
        obj = cls.model_validate(raw)
    except ValidationError as exc:
        return [(format_path(loc), loc, msg) for loc, msg in describe_validation_error(exc, cls)]
    into.objects.append(Loaded(obj, origin))
    return []


def validate(raw: Any, source: str = "<request>") -> Resource:
    """One object from an API request, checked exactly as files are (LoadError if bad)."""
    into = LoadResult()
    bad = _load_object(raw, Origin(source, 0), into)
    ref = _raw_ref(raw)
    if bad:
        raise LoadError([Problem(msg, None, None, ref, fld) for fld, _, msg in bad])
    if into.skipped:
        raise LoadError(
            [Problem(f"kind {into.skipped[0].kind} is not served here", None, None, ref, "kind")]
        )
    return into.objects[0].obj


def _duplicate_objects(result: LoadResult) -> list[Problem]:
    first: dict[str, Origin] = {}
    problems = []
    for loaded in result.objects:
        ref = loaded.obj.ref
        if ref in first:
            o = first[ref]
            problems.append(
                Problem(
                    f"defined twice (first in {o.file}, document {o.document + 1})",
                    loaded.origin.file,
                    None,
                    ref,
                    code="LM003",
                )
            )
        else:
            first[ref] = loaded.origin
    return problems


class _LineFinder:
    """Finds the line of a field path in a file, composing its YAML only when asked."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._docs: list[yaml.Node] | None = None

    def line_of(self, origin: Origin, loc: tuple[str | int, ...]) -> int | None:
        if self._docs is None:
            try:
                with gc_paused():
                    self._docs = list(yaml.compose_all(self._text, Loader=_Composer))
            except yaml.YAMLError:
                self._docs = []
        if origin.document >= len(self._docs):
            return None
        node: yaml.Node | None = self._docs[origin.document]
        line = node.start_mark.line + 1 if node is not None else None
        for step in (*origin.path_prefix(), *loc):
            node, key_line = _child(node, step)
            if node is None:
                break
            line = key_line
        return line


def _child(node: yaml.Node | None, step: str | int) -> tuple[yaml.Node | None, int | None]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == step:
                return value, key.start_mark.line + 1
    elif (
        isinstance(node, yaml.SequenceNode)
        and isinstance(step, int)
        and (0 <= step < len(node.value))
    ):
        item = node.value[step]
        return item, item.start_mark.line + 1
    return None, None
