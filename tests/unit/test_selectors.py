"""Label selectors as kubectl users write them, both equality- and set-based."""

from __future__ import annotations

import pytest

from livemig.errors import UsageError
from livemig.server.selectors import matches_selector, parse_selector

WEB = {"tier": "web", "app": "shop"}
DB = {"tier": "db"}
BARE: dict[str, str] = {}


@pytest.mark.parametrize(
    ("selector", "web", "db", "bare"),
    [
        ("tier=web", True, False, False),
        ("tier==web", True, False, False),
        ("tier!=web", False, True, True),  # != also matches objects without the key
        ("tier in (web,db)", True, True, False),
        ("tier in (web, db)", True, True, False),
        ("tier notin (web)", False, True, True),
        ("app", True, False, False),
        ("!app", False, True, True),
        ("tier in (web,db),!app", False, True, False),
        ("tier=web,app=shop", True, False, False),
        ("", True, True, True),
        ("example.com/tier=web", False, False, False),
    ],
)
def test_a_selector_matches_as_kubernetes_does(
    selector: str, web: bool, db: bool, bare: bool
) -> None:
    parsed = parse_selector(selector)
    assert [matches_selector(parsed, labels) for labels in (WEB, DB, BARE)] == [web, db, bare]


@pytest.mark.parametrize(
    ("selector", "words"),
    [
        ("tier in web,db", "cannot read 'tier in web'"),
        ("tier in (web", "unbalanced '('"),
        ("tier in ()", "the set needs label values"),
        ("tier=web,,app", "an empty requirement"),
        ("tier = a b", "cannot read"),
        ("=web", "cannot read"),
    ],
)
def test_a_selector_that_cannot_be_read_is_an_error_not_an_empty_match(
    selector: str, words: str
) -> None:
    with pytest.raises(UsageError) as caught:
        parse_selector(selector)
    assert words in str(caught.value)
