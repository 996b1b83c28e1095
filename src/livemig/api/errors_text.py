"""Turn pydantic's validation errors into messages a cluster operator can act on."""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from livemig.api.limits import INT32_MAX, INT64_MAX

# The integer types of KubeVirt's Go API that bound our integer fields (api.limits).
_INT_TYPES = {
    INT32_MAX: f"int32 ({INT32_MAX}), as in KubeVirt",
    INT64_MAX: "int64 (2^63-1), as in KubeVirt",
}
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def format_path(loc: Sequence[str | int]) -> str:
    """``spec.volumes[0].name``; keys with dots or slashes in brackets: ``labels["a.io/b"]``."""
    out = ""
    for step in loc:
        if isinstance(step, int):
            out += f"[{step}]"
        elif _PLAIN_KEY.fullmatch(step):
            out += f".{step}" if out else step
        else:
            out += f'["{step}"]'
    return out


def _what(value: Any) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, int):
        return f"{value} (an integer)"
    if isinstance(value, float):
        return f"{value} (a decimal number)"
    if isinstance(value, str):
        return f'"{value}" (a string)'
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return repr(value)


def describe_validation_error(
    exc: ValidationError, model: type[BaseModel]
) -> list[tuple[tuple[str | int, ...], str]]:
    """(field path, message) for each error, with "did you mean" for unknown fields."""
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        value = err.get("input")
        kind = err["type"]
        if kind == "extra_forbidden":
            name = str(loc[-1])
            msg = f'unknown field "{name}"'
            known = known_fields(model, loc[:-1])
            close = _closest(name, known)
            if close:
                msg += f" (did you mean {close}?)"
            elif known:
                msg += f"; known fields here: {', '.join(sorted(known))}"
        elif kind == "missing":
            msg = "required field is missing"
        elif kind == "string_type":
            msg = f"expected a string, got {_what(value)}"
            if isinstance(value, bool | int | float):
                msg += f'; quote it: "{_yaml_spelling(value)}"'
        elif kind in ("int_type", "int_parsing", "int_from_float"):
            msg = f"expected an integer, got {_what(value)}"
            if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
                msg += f"; write it without quotes: {value.strip()}"
        elif kind in ("bool_type", "bool_parsing"):
            msg = f"expected true or false, got {_what(value)}"
        elif kind in ("dict_type", "model_type", "model_attributes_type"):
            msg = f"expected a mapping, got {_what(value)}"
        elif kind == "list_type":
            msg = f"expected a list, got {_what(value)}"
        elif kind == "greater_than_equal":
            msg = f"must be {err.get('ctx', {}).get('ge')} or more, got {value}"
        elif kind == "less_than_equal":
            limit = err.get("ctx", {}).get("le")
            msg = f"{value} is above {_INT_TYPES.get(int(limit or 0), f'the limit ({limit})')}"
        elif kind == "enum":
            expected = [e.strip("'") for e in re.findall(r"'[^']*'", err["ctx"]["expected"])]
            msg = f"{_what(value)} is not one of {', '.join(expected)}"
            close = _closest(str(value), expected)
            if close:
                msg += f" (did you mean {close}?)"
        elif kind == "value_error":
            msg = str(err["ctx"]["error"]) if "ctx" in err else err["msg"]
        else:
            msg = err["msg"]
        out.append((loc, msg))
    return out


def _yaml_spelling(value: bool | int | float) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _closest(name: str, known: Sequence[str] | set[str]) -> str | None:
    by_lower = {k.lower(): k for k in known}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return close[0] if close else None


def known_fields(model: type[BaseModel], loc: Sequence[str | int]) -> set[str]:
    """The YAML field names that the model accepts at ``loc`` (empty when not a model)."""
    current: Any = model
    for step in loc:
        current = _model_in(current)
        if current is None:
            return set()
        if isinstance(step, int):
            continue
        for name, info in current.model_fields.items():
            if (info.alias or name) == step:
                current = info.annotation
                break
        else:
            return set()
    final = _model_in(current)
    if final is None:
        return set()
    return {info.alias or name for name, info in final.model_fields.items()}


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model inside ``X | None``, ``list[X]``, ``Annotated[X, ...]``; None if there is none."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
