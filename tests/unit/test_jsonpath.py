"""kubectl's -o jsonpath templates, the parts scripts use."""

from __future__ import annotations

import pytest

from livemig.cli.jsonpath import render
from livemig.errors import UsageError

LIST = {
    "kind": "List",
    "items": [
        {
            "metadata": {"name": "a", "labels": {"app.kubernetes.io/name": "web"}},
            "status": {"phase": "Running", "ok": True},
        },
        {"metadata": {"name": "b"}, "status": {"phase": "Failed", "ok": False}},
    ],
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{.items[0].metadata.name}", "a"),
        ("{.items[-1].status.phase}", "Failed"),
        ("{.items[*].metadata.name}", "a b"),
        ("{.items[0].metadata.labels['app.kubernetes.io/name']}", "web"),
        ('{range .items[*]}{.metadata.name}={.status.phase}{"\\n"}{end}', "a=Running\nb=Failed\n"),
        ("{.items[*].status.ok}", "true false"),
        ("{.items[0].status}", '{"phase":"Running","ok":true}'),
        ("{.items[5].metadata.name}", ""),
        ("name: {.kind}", "name: List"),
        ("'{.kind}'", "List"),
        ("{range .nothing[*]}x{end}done", "done"),
    ],
)
def test_templates_render_as_kubectl_does(template: str, expected: str) -> None:
    assert render(template, LIST) == expected


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("{.items[0", "unclosed"),
        ("{.items(0)}", "cannot read"),
        ("{range .items[*]}{.metadata.name}", "without {end}"),
        ("{.kind}{end}", "without {range}"),
    ],
)
def test_a_template_it_cannot_read_is_an_error(template: str, words: str) -> None:
    with pytest.raises(UsageError) as caught:
        render(template, LIST)
    assert words in str(caught.value)
