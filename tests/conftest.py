"""Shared helpers: write YAML to a temporary file and load it the way the CLI does."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from livemig.api.loading import LoadResult, load_paths
from livemig.errors import LoadError, Problem

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def yaml_file(tmp_path: Path) -> Callable[..., Path]:
    """Write dedented YAML to a file in tmp_path and return its path."""
    count = 0

    def write(text: str, name: str | None = None) -> Path:
        nonlocal count
        count += 1
        path = tmp_path / (name or f"input-{count}.yaml")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write


@pytest.fixture
def load_text(yaml_file: Callable[..., Path]) -> Callable[[str], LoadResult]:
    def load(text: str) -> LoadResult:
        return load_paths([str(yaml_file(text))])

    return load


@pytest.fixture
def problems_of(yaml_file: Callable[..., Path]) -> Callable[[str], list[Problem]]:
    """Load text that must fail; return the problems."""

    def problems(text: str) -> list[Problem]:
        with pytest.raises(LoadError) as info:
            load_paths([str(yaml_file(text))])
        return list(info.value.problems)

    return problems
