"""Kubernetes quantities (``64Mi``, ``500M``, ``1e3``, ``100m``), parsed exactly.

The grammar is Kubernetes' own (k8s.io/apimachinery ``resource.Quantity``)::

    quantity  ::= sign? number suffix?
    number    ::= digits | digits "." digits? | "." digits
    suffix    ::= Ki|Mi|Gi|Ti|Pi|Ei  |  m|k|M|G|T|P|E  |  (e|E) sign? digits

Values are kept as exact fractions; byte counts are rounded up to a whole byte, as Kubernetes'
``Quantity.Value()`` does.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from livemig.errors import QuantityError

BINARY_SUFFIXES: dict[str, int] = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
DECIMAL_SUFFIXES: dict[str, Fraction] = {
    "m": Fraction(1, 1000),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}

_QUANTITY = re.compile(
    r"(?P<sign>[+-]?)(?P<number>\d+(?:\.\d*)?|\.\d+)"
    r"(?:(?P<exp>[eE][+-]?\d+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E))?"
)
# Exponents beyond this are surely typos and would make Fraction arithmetic explode.
_MAX_EXPONENT = 64


@dataclass(frozen=True, slots=True)
class Quantity:
    """A parsed quantity; ``raw`` is exactly what the user wrote (kept for round-trips)."""

    raw: str | int | float
    value: Fraction

    @property
    def text(self) -> str:
        return str(self.raw)

    def to_bytes(self) -> int:
        """Whole bytes, rounded up like Kubernetes does for fractional values."""
        return math.ceil(self.value)

    def __str__(self) -> str:
        return self.text


def parse_quantity(raw: str | int | float) -> Quantity:
    """Parse a quantity as YAML gives it (a string, or a bare number)."""
    if isinstance(raw, bool):
        raise QuantityError(f"{raw!r} is a boolean, not a quantity")
    if isinstance(raw, int):
        return Quantity(raw, Fraction(raw))
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise QuantityError(f"{raw!r} is not a quantity")
        text = repr(raw)
    elif isinstance(raw, str):
        text = raw
    else:
        raise QuantityError(f"{raw!r} is not a quantity (expected a string such as 64Mi)")
    m = _QUANTITY.fullmatch(text)
    if m is None:
        hint = suggest_quantity(text)
        tail = f" (did you mean {hint}?)" if hint else " (expected e.g. 64Mi, 500M, 1Gi, 0)"
        raise QuantityError(f"{text!r} is not a quantity{tail}")
    value = Fraction(m["number"])
    if m["exp"]:
        exp = int(m["exp"][1:])
        if abs(exp) > _MAX_EXPONENT:
            raise QuantityError(f"{text!r}: exponent {exp} is out of range")
        value *= Fraction(10) ** exp
    elif m["suffix"]:
        suffix = m["suffix"]
        value *= BINARY_SUFFIXES.get(suffix) or DECIMAL_SUFFIXES[suffix]
    if m["sign"] == "-":
        value = -value
    return Quantity(raw, value)


_SUFFIX_TYPO = re.compile(r"\s*(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(?P<unit>[A-Za-z]+)?\s*")


def suggest_quantity(text: str) -> str | None:
    """The quantity the user probably meant (``64Mb`` → ``64Mi``), or None."""
    m = _SUFFIX_TYPO.fullmatch(text)
    if m is None:
        return None
    num, unit = m["num"], m["unit"] or ""
    if not unit:  # only stray whitespace
        return num
    first = unit[0].upper()
    if first in "KMGTPE" and unit.lower() in {
        first.lower() + tail for tail in ("", "b", "i", "ib", "ibyte", "ibytes", "byte", "bytes")
    }:
        return f"{num}{first}i"
    if unit.lower() in {"b", "byte", "bytes"}:
        return num
    return None


def format_bytes(n: int) -> str:
    """Canonical quantity for a byte count: the largest binary suffix that divides it exactly."""
    if n < 0:
        raise ValueError("byte counts are not negative")
    if n == 0:
        return "0"
    for suffix, factor in reversed(BINARY_SUFFIXES.items()):
        if n % factor == 0:
            return f"{n // factor}{suffix}"
    return str(n)


def human_bytes(n: float) -> str:
    """A short human reading of a byte count (``64 MiB``), for tables, not for round-trips."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            if unit == "B":
                return f"{int(n)} B"
            return f"{n:.1f} {unit}".replace(".0 ", " ")
        n /= 1024
    raise AssertionError("unreachable")


def short_bytes(n: int) -> str:
    """A byte count in Kubernetes' own suffixes for messages: ``6Gi``, ``3.5Gi``, ``512Mi``."""
    if n < 0:
        return "-" + short_bytes(-n)
    for suffix, factor in reversed(BINARY_SUFFIXES.items()):
        if n >= factor:
            text = f"{n / factor:.1f}".removesuffix(".0")
            return f"{text}{suffix}"
    return f"{n} bytes" if n != 1 else "1 byte"
