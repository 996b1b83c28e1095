"""Field types shared by the resource models: quantities, names, labels, counters."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, PlainSerializer, PlainValidator

from livemig.api.limits import (
    INT32_MAX,
    INT64_MAX,
    MAX_MEMORY_BYTES,
    UINT64_MAX,
)
from livemig.api.quantity import Quantity, parse_quantity, short_bytes

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


def _size(limit: int, what: str) -> Any:
    """A quantity that is a size or a rate: not negative and at most ``limit`` (one check, on
    the hot path of loading 100,000 objects)."""

    def check(q: Quantity) -> Quantity:
        if q.value < 0:
            raise ValueError(f"{q.text!r} is negative; a size or rate cannot be")
        if q.value > limit:
            raise ValueError(f"{q.text!r} is above {what}")
        return q

    return AfterValidator(check)


# A quantity keeps exactly what the user wrote, so objects round-trip unchanged.
QuantityField = Annotated[
    Quantity,
    PlainValidator(_quantity, json_schema_input_type=str | int),
    PlainSerializer(lambda q: q.raw, return_type=str | int | float),
]
ByteQuantity = Annotated[
    QuantityField, _size(INT64_MAX, "the largest size there is (2^63-1 bytes)")
]
#: bytes/s sent to QEMU's max-bandwidth, a uint64.
BandwidthQuantity = Annotated[
    QuantityField, _size(UINT64_MAX, "QEMU's largest bandwidth (2^64-1 bytes/s)")
]
#: A VM's (or node's) memory.
MemoryQuantity = Annotated[
    QuantityField,
    _size(MAX_MEMORY_BYTES, f"what one machine can hold ({short_bytes(MAX_MEMORY_BYTES)})"),
]
Labels = Annotated[dict[str, str], AfterValidator(check_labels)]
ObjectName = Annotated[str, AfterValidator(check_dns1123_subdomain)]
NamespaceName = Annotated[str, AfterValidator(check_dns1123_label)]
# Bounds checked natively by pydantic-core (no Python call per field); errors_text words them.
NonNegativeInt = Annotated[int, Field(ge=0, le=INT64_MAX)]
#: Counts KubeVirt declares as 32-bit (the parallel-migration limits, CPU topology).
Int32 = Annotated[int, Field(ge=0, le=INT32_MAX)]
