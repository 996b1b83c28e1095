"""The fast kubectl-List path must give exactly what the plain path gives."""

from pathlib import Path

import pytest
import yaml

from livemig.api.yamlparse import YamlSyntaxError, _parse_kubectl_list, _parse_plain, parse

from ..conftest import REPO

DUMP = (REPO / "examples/cluster/cluster-dump.yaml").read_text()


def as_tuples(docs: list) -> list:  # type: ignore[type-arg]
    return [(d.document, d.item, d.data, d.duplicates) for d in docs]


def test_kubectl_list_fast_path_equals_plain_path_on_a_real_dump() -> None:
    fast = _parse_kubectl_list(DUMP)
    assert fast is not None, "the example dump has kubectl's layout and must take the fast path"
    assert as_tuples(fast) == as_tuples(_parse_plain(DUMP))
    assert [d.data for d in fast] == yaml.safe_load(DUMP)["items"]


def test_duplicate_key_lines_are_those_of_the_original_file_on_the_fast_path() -> None:
    text = "apiVersion: v1\nitems:\n- a: 1\n  b: 2\n- a: 1\n  a: 3\nkind: List\n"
    fast = _parse_kubectl_list(text)
    assert fast is not None
    dup = fast[1].duplicates[0]
    assert (dup.line, dup.key, dup.first_line) == (6, "a", 5)
    plain = _parse_plain(text)  # knows the document, not the item, so it differs only there
    assert [d.data for d in fast] == [d.data for d in plain]
    assert [x for d in fast for x in d.duplicates] == [x for d in plain for x in d.duplicates]


@pytest.mark.parametrize(
    "text",
    [
        "kind: List\nitems:\n  - a: 1\n",  # items indented: not kubectl's layout
        "kind: List\nitems: []\n",
        "a: 1\n---\nkind: List\nitems:\n- a: 1\n",  # several documents
        "kind: Thing\nitems:\n- a: 1\n",  # not a List
    ],
)
def test_other_layouts_take_the_plain_path(text: str) -> None:
    assert _parse_kubectl_list(text) is None
    list(parse(text))  # and still parse


def test_yaml_1_1_scalars_and_string_timestamps() -> None:
    (doc,) = parse("a: yes\nb: 'yes'\nc: 2026-01-01T00:00:00Z\nd: 1.5\ne: ~\nf: 0o7\n")
    assert doc.data == {
        "a": True,
        "b": "yes",
        "c": "2026-01-01T00:00:00Z",
        "d": 1.5,
        "e": None,
        "f": "0o7",
    }


def test_syntax_errors_carry_the_line(tmp_path: Path) -> None:
    with pytest.raises(YamlSyntaxError) as info:
        list(parse("apiVersion: v1\nitems:\n- a: [1\n- b: 2\nkind: List\n"))
    assert info.value.line is not None and info.value.line >= 3
