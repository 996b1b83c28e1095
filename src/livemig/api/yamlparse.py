"""YAML text → plain Python objects, fast enough for a 100,000-VMI cluster dump.

Semantics are PyYAML's safe YAML 1.1 (what Kubernetes' go-yaml v2 reads: ``yes``/``True`` are
booleans) with three differences: timestamps stay strings (Kubernetes keeps them as strings),
duplicate keys are recorded instead of silently overwritten, and ``kind: List`` documents are
expanded into their items.

Speed comes from three things, none of which changes the result:
- a lean constructor that builds dicts/lists/strings directly from libyaml's nodes;
- the cyclic garbage collector paused while millions of containers are created (with it on,
  loading grows super-linearly with the size of a single document);
- a ``kind: List`` in kubectl's layout (``items:`` at column 0, each item starting with ``- `` at
  column 0) parsed item by item, so no single huge node tree is built. Anything else, and any
  error, takes the plain path, which also gives the authoritative error message and line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from sys import intern
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from livemig.api.limits import MAX_ALIAS_EXPANSION, MAX_DEPTH, InvalidBody, check_value
from livemig.bulk import gc_paused

_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"
# libyaml refuses lone-surrogate escapes itself; only the pure-Python parser lets them through.
_CHECK_UNICODE = _Base is yaml.SafeLoader

# Kubernetes keeps timestamps (creationTimestamp, …) as strings; YAML 1.1 would make datetimes.
_RESOLVERS = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in _Base.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True, slots=True)
class Duplicate:
    line: int
    key: str
    first_line: int


@dataclass(slots=True)
class Document:
    """One object: the YAML document it is in, its index in a List (if any), its data."""

    document: int
    item: int | None
    data: Any
    duplicates: list[Duplicate] = field(default_factory=list)


class YamlSyntaxError(Exception):
    def __init__(self, message: str, line: int | None, refused: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.refused = refused  # well-formed, but over a limit (api.limits)


class _Refused(yaml.constructor.ConstructorError):
    """Over a limit of api.limits: deep nesting, alias expansion, invalid Unicode."""


class _Loader(_Base):  # type: ignore[misc,valid-type]
    yaml_implicit_resolvers = _RESOLVERS

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[Duplicate] = []
        self._built: dict[Node, Any] = {}  # containers built in this document (for aliases)
        self._expanded = 0
        # No "&" anywhere: no anchors, so no aliases, and the memo can be skipped (a 100,000-VMI
        # dump builds millions of containers).
        self._aliases_possible = "&" in stream

    def resolve(self, kind: type[Node], value: Any, implicit: tuple[bool, bool]) -> str:
        # The base class does the same lookup through more layers; this is on the hot path.
        if kind is ScalarNode and implicit[0]:
            if value == "":
                return _NULL
            for tag, rx in _RESOLVERS.get(value[0], ()):
                if rx.match(value):
                    return str(tag)
            return _STR
        return super().resolve(kind, value, implicit)  # type: ignore[no-any-return]

    def construct_document(self, node: Node) -> Any:
        self._built = {}
        self._expanded = 0
        data = self._build(node, 0)
        if _CHECK_UNICODE:  # the pure-Python parser lets lone surrogates through
            try:
                check_value(data)
            except InvalidBody as exc:
                raise _Refused(None, None, str(exc), node.start_mark) from None
        self._built = {}
        self.constructed_objects: dict[Node, Any] = {}
        self.recursive_objects: dict[Node, None] = {}
        self.state_generators: list[Any] = []
        return data

    def _build(self, node: Node, depth: int) -> Any:
        tag = node.tag
        if tag == _STR and type(node) is ScalarNode:
            value: str = node.value
            # Dumps repeat the same short values ("virtio", "LiveMigrate", …) endlessly.
            return intern(value) if len(value) <= 64 else value
        if tag == _MAP and type(node) is MappingNode:
            if depth >= MAX_DEPTH or self._aliases_possible:
                shared = self._shared_or_refused(node, depth)
                if shared is not None:
                    return shared
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag != _STR or type(key_node) is not ScalarNode:
                    return self._construct_checked(node)  # merge keys, non-string keys
                # 100,000 objects repeat the same few hundred keys: share one copy of each.
                key = intern(key_node.value)
                if key in out:
                    self.duplicates.append(_duplicate(node, key_node, key))
                out[key] = self._build(value_node, depth + 1)
            if self._aliases_possible:
                self._built[node] = out
            return out
        if tag == _SEQ and type(node) is SequenceNode:
            if depth >= MAX_DEPTH or self._aliases_possible:
                shared = self._shared_or_refused(node, depth)
                if shared is not None:
                    return shared
            items = [self._build(child, depth + 1) for child in node.value]
            if self._aliases_possible:
                self._built[node] = items
            return items
        return self._construct_checked(node)

    def _shared_or_refused(self, node: Node, depth: int) -> Any:
        """For a container: refuse it past MAX_DEPTH; if it was built before (an alias),
        count what it expands to and return the value built then; else None."""
        if depth >= MAX_DEPTH:
            raise _Refused(None, None, f"nested deeper than {MAX_DEPTH} levels", node.start_mark)
        shared = self._built.get(node)
        if shared is not None:
            self._expanded += _expanded_size(node, MAX_ALIAS_EXPANSION - self._expanded)
            if self._expanded > MAX_ALIAS_EXPANSION:
                raise _Refused(
                    None,
                    None,
                    f"aliases expand to more than {MAX_ALIAS_EXPANSION:,} values (a "
                    '"billion laughs" document?); write the values out instead',
                    node.start_mark,
                )
        return shared

    def _construct_checked(self, node: Node) -> Any:
        """PyYAML's own constructor (merge keys, tags), then the same limits on its result."""
        data = self.construct_object(node, deep=True)
        try:
            check_value(data)
        except InvalidBody as exc:
            raise _Refused(None, None, str(exc), node.start_mark) from None
        return data


def _expanded_size(node: Node, budget: int) -> int:
    """How many values ``node`` stands for, expanded; stops counting past ``budget``."""
    count = 0
    stack = [node]
    while stack and count <= budget:
        current = stack.pop()
        count += 1
        if isinstance(current, MappingNode):
            for key, value in current.value:
                stack.append(key)
                stack.append(value)
        elif isinstance(current, SequenceNode):
            stack.extend(current.value)
    return count


def _duplicate(mapping: MappingNode, key_node: Node, key: Any) -> Duplicate:
    first = next(k for k, _ in mapping.value if k.value == key_node.value)
    return Duplicate(key_node.start_mark.line + 1, str(key), first.start_mark.line + 1)


def parse(text: str) -> Iterator[Document]:
    """Every object in the text, List items expanded; raises YamlSyntaxError.

    Objects come one at a time so a caller that validates and drops the raw data never holds
    the whole dump twice.
    """
    with gc_paused():
        fast = _kubectl_list_items(text)
        if fast is None:
            yield from _parse_plain(text)
            return
        try:
            yield from fast
        except yaml.YAMLError as exc:
            _parse_plain(text)  # raises the authoritative YamlSyntaxError with its line
            raise YamlSyntaxError(str(exc), None) from exc


def _load_all(text: str) -> Iterator[tuple[Any, list[Duplicate]]]:
    loader = _Loader(text)
    try:
        while loader.check_data():
            data = loader.get_data()
            dups, loader.duplicates = loader.duplicates, []
            yield data, dups
    finally:
        loader.dispose()


def _is_list(data: Any) -> bool:
    # `oc get a,b -o yaml` prints kind: List; typed lists (VirtualMachineList) look the same.
    return isinstance(data, dict) and str(data.get("kind", "")).endswith("List") and "items" in data


def _parse_plain(text: str) -> list[Document]:
    out: list[Document] = []
    try:
        for index, (data, dups) in enumerate(_load_all(text)):
            if data is None:
                continue
            if _is_list(data) and isinstance(data["items"], list):
                first = len(out)
                out += [Document(index, i, item) for i, item in enumerate(data["items"])]
                if dups:
                    if len(out) > first:
                        out[first].duplicates.extend(dups)
                    else:
                        out.append(Document(index, None, {}, dups))
            else:
                out.append(Document(index, None, data, dups))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        what = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark is not None else None
        if "maximum nesting depth" in str(what):  # libyaml's own bound (1,000) hit first
            raise YamlSyntaxError(f"nested deeper than {MAX_DEPTH} levels", line, True) from exc
        raise YamlSyntaxError(str(what), line, refused=isinstance(exc, _Refused)) from exc
    return out


def _parse_kubectl_list(text: str) -> list[Document] | None:
    """All items of a kubectl-layout List at once, or None (kept for tests)."""
    items = _kubectl_list_items(text)
    try:
        return list(items) if items is not None else None
    except yaml.YAMLError:
        return None


def _kubectl_list_items(text: str) -> Iterator[Document] | None:
    """Item-by-item parse of a kubectl-layout List, or None to use the plain path."""
    lines = text.split("\n")
    if any(line.startswith(("---", "...")) for line in lines):
        return None  # several documents: not a single kubectl List
    try:
        start = lines.index("items:")
    except ValueError:
        return None
    item_starts: list[int] = []
    end = len(lines)
    for j in range(start + 1, len(lines)):
        line = lines[j]
        if line.startswith("- ") or line == "-":
            item_starts.append(j)
        elif line == "" or line.startswith((" ", "#")):
            if not item_starts and line.strip() and not line.lstrip().startswith("#"):
                return None  # indented content before the first item: not kubectl's layout
        else:
            end = j
            break
    if not item_starts:
        return None
    try:
        head = yaml.load("\n".join(lines[:start] + lines[end:]), Loader=_Loader)
    except yaml.YAMLError:
        return None  # the plain path reports it with the right line
    if not isinstance(head, dict) or "items" in head or not _is_list({**head, "items": []}):
        return None
    return _items(lines, item_starts, end)


def _items(lines: list[str], item_starts: list[int], end: int) -> Iterator[Document]:
    # One stream, a document per item; each item's lines keep their distance from its start.
    bounds = [*item_starts, end]
    stream_starts: list[int] = []
    chunks: list[str] = []
    line_no = 1
    for k in range(len(item_starts)):
        chunk = lines[bounds[k] : bounds[k + 1]]
        stream_starts.append(line_no + 1)  # after the "---" line
        chunks.append("---\n" + "\n".join(chunk))
        line_no += 1 + len(chunk)
    stream = "\n".join(chunks)
    del chunks, lines  # only the stream is needed from here on
    for k, (data, dups) in enumerate(_load_all(stream)):
        if not isinstance(data, list) or len(data) != 1:
            raise yaml.YAMLError(f"List item {k} is not a single object")
        shift = item_starts[k] + 1 - stream_starts[k]
        moved = [Duplicate(d.line + shift, d.key, d.first_line + shift) for d in dups]
        yield Document(0, k, data[0], moved)
