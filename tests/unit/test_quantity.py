from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from livemig.api.quantity import (
    BINARY_SUFFIXES,
    DECIMAL_SUFFIXES,
    format_bytes,
    parse_quantity,
)
from livemig.errors import QuantityError


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("64Mi", 64 * 2**20),
        ("2048Mi", 2048 * 2**20),
        ("0Mi", 0),
        ("0", 0),
        ("1Gi", 2**30),
        ("500M", 500 * 10**6),
        ("1e3", 1000),
        ("1E3", 1000),
        ("2e-3", Fraction(2, 1000)),
        ("1E", 10**18),  # bare E is the exa suffix, not an exponent
        ("100m", Fraction(1, 10)),
        ("1.5Gi", 3 * 2**29),
        (".5Ki", 512),
        ("1.", 1),
        ("+3k", 3000),
        ("-1", -1),
        (128, 128),
        (0.5, Fraction(1, 2)),
    ],
)
def test_quantity_grammar_parses_exactly(text: str | int | float, value: Fraction | int) -> None:
    assert parse_quantity(text).value == value


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ("64Mb", "64Mi"),
        ("64MB", "64Mi"),
        ("64MiB", "64Mi"),
        ("1GB", "1Gi"),
        ("64 Mi", "64Mi"),
        ("2kb", "2Ki"),
        ("100 bytes", "100"),
    ],
)
def test_common_unit_typos_suggest_the_kubernetes_spelling(text: str, suggestion: str) -> None:
    with pytest.raises(QuantityError, match=f"did you mean {suggestion}\\?"):
        parse_quantity(text)


@pytest.mark.parametrize("text", ["", "Mi", "abc", "1.2.3", "1Kii", "--1", "1e", "1 e3", "0x10"])
def test_non_quantities_are_rejected(text: str) -> None:
    with pytest.raises(QuantityError, match="is not a quantity"):
        parse_quantity(text)


def test_booleans_are_not_quantities() -> None:
    with pytest.raises(QuantityError, match="boolean"):
        parse_quantity(True)


def test_fractional_bytes_round_up_like_kubernetes() -> None:
    assert parse_quantity("100m").to_bytes() == 1
    assert parse_quantity("1.5").to_bytes() == 2


def test_absurd_exponents_are_refused_instead_of_computed() -> None:
    with pytest.raises(QuantityError, match="out of range"):
        parse_quantity("1e999999")


@given(st.integers(min_value=0, max_value=2**62))
def test_canonical_byte_format_round_trips(n: int) -> None:
    text = format_bytes(n)
    assert parse_quantity(text).to_bytes() == n


suffixes = st.sampled_from(
    [(s, Fraction(f)) for s, f in BINARY_SUFFIXES.items()]
    + [(s, f) for s, f in DECIMAL_SUFFIXES.items()]
)


@given(
    st.integers(min_value=0, max_value=10**9),
    st.integers(min_value=0, max_value=999),
    suffixes,
    st.sampled_from(["", "+", "-"]),
)
def test_any_grammatical_quantity_parses_to_its_value(
    whole: int, frac: int, suffix: tuple[str, Fraction], sign: str
) -> None:
    number = f"{whole}.{frac:03d}"
    expected = (whole + Fraction(frac, 1000)) * suffix[1] * (-1 if sign == "-" else 1)
    assert parse_quantity(f"{sign}{number}{suffix[0]}").value == expected


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=-20, max_value=20))
def test_exponent_form_parses_to_its_value(mantissa: int, exp: int) -> None:
    assert parse_quantity(f"{mantissa}e{exp}").value == mantissa * Fraction(10) ** exp
