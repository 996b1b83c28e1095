"""Field types shared by the resource models: quantities, names, labels, counters."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, PlainSerializer, PlainValidator

from livemig.api.quantity import Quantity, parse_quantity

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")


def check_dns1123_subdomain(name: str) -> str:
    """Object names (most kinds): lowercase alphanumerics, '-' and '.', at most 253 chars."""
    if not name:
        raise ValueError("must not be empty")
    if len(name) > 253:
        raise ValueError(f"{name!r} is longer than 253 characters")
    if not all(_DNS1123_LABEL.fullmatch(part) for part in name.split(".")):
        raise ValueError(
            f"{name!r} is not a valid name: use lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit (DNS-1123 subdomain)"
        )
    return name


def check_dns1123_label(name: str) -> str:
    """Namespace names: lowercase alphanumerics and '-', at most 63 chars."""
    if not name:
        raise ValueError("must not be empty")
    if len(name) > 63 or not _DNS1123_LABEL.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a valid namespace name: use at most 63 lowercase letters, digits "
            "and '-', starting and ending with a letter or digit (DNS-1123 label)"
        )
    return name


def check_label_key(key: str) -> None:
    prefix, _, name = key.rpartition("/")
    if prefix:
        check_dns1123_subdomain(prefix)
    if len(name) > 63 or not _LABEL_NAME.fullmatch(name):
        raise ValueError(
            f"label key {key!r} is not valid: the name part must be at most 63 characters of "
            "letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        )


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        check_label_key(key)
        if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
            raise ValueError(
                f"label {key}: value {value!r} is not valid: at most 63 letters, digits, '-', '_' "
                "and '.', starting and ending with a letter or digit (or empty)"
            )
    return labels


def _quantity(raw: Any) -> Quantity:
    if isinstance(raw, Quantity):
        return raw
    return parse_quantity(raw)


def _non_negative(q: Quantity) -> Quantity:
    if q.value < 0:
        raise ValueError(f"{q.text!r} is negative; a size or rate cannot be")
    return q


# A quantity keeps exactly what the user wrote, so objects round-trip unchanged.
QuantityField = Annotated[
    Quantity,
    PlainValidator(_quantity, json_schema_input_type=str | int),
    PlainSerializer(lambda q: q.raw, return_type=str | int | float),
]
ByteQuantity = Annotated[QuantityField, AfterValidator(_non_negative)]
Labels = Annotated[dict[str, str], AfterValidator(check_labels)]
ObjectName = Annotated[str, AfterValidator(check_dns1123_subdomain)]
NamespaceName = Annotated[str, AfterValidator(check_dns1123_label)]
NonNegativeInt = Annotated[int, Field(ge=0)]
