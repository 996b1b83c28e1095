"""How every benchmark prints: one JSON line per figure."""

from __future__ import annotations

import json


def emitter(bench: str):  # type: ignore[no-untyped-def]
    def emit(figure: str, value: float, unit: str, target: str | None = None) -> None:
        line: dict[str, object] = {"bench": bench, "figure": figure, "value": value, "unit": unit}
        if target:
            line["target"] = target
        print(json.dumps(line), flush=True)

    return emit
