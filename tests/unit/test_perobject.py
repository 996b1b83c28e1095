"""Per-object isolation: a failing object backs off exponentially, an edit retries it at once,
and success clears its condition. The informer and event recorder here are stand-ins that
record what would be written (the real ones are exercised end to end in
tests/e2e/test_poison_pills.py)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from livemig.errors import InvalidInput
from livemig.perobject import PerObject


class ManualClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t


class RecordingInformer:
    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj

    async def modify(self, kind: str, name: str, ns: str | None, change: Any, status: bool) -> Any:
        out = change(copy.deepcopy(self.obj))
        if out is not None:
            self.obj = out
        return self.obj


class RecordingEvents:
    component = "test"

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    async def record(self, obj: dict[str, Any], type_: Any, reason: str, message: str) -> None:
        self.seen.append((reason, message))


def vmi(rate: str = "abc") -> dict[str, Any]:
    return {
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "a", "namespace": "default", "annotations": {"r": rate}},
        "spec": {},
    }


def test_failures_back_off_exponentially_edits_retry_at_once_success_clears() -> None:
    async def go() -> None:
        obj = vmi()
        informer, events, clock = RecordingInformer(obj), RecordingEvents(), ManualClock()
        each = PerObject(informer, events, clock, base=1.0, cap=4.0)  # type: ignore[arg-type]
        calls = 0

        async def work() -> None:
            nonlocal calls
            calls += 1
            if obj["metadata"]["annotations"]["r"] == "abc":
                raise InvalidInput("annotation r: 'abc' is not a quantity")

        ran_at = []
        for step in range(40):  # 10 s of passes every 0.25 s
            clock.t = step * 0.25
            before = calls
            await each.run("VirtualMachineInstance", obj, "RetuneFailed", work)
            if calls > before:
                ran_at.append(clock.t)
        assert ran_at == [0.0, 1.0, 3.0, 7.0]  # 1, 2, 4 s apart, then capped at 4 s
        cond = informer.obj["status"]["conditions"][0]
        assert (cond["type"], cond["status"], cond["reason"]) == (
            "Synchronized",
            "False",
            "RetuneFailed",
        )
        assert "'abc' is not a quantity" in cond["message"]
        assert events.seen[0] == ("RetuneFailed", "annotation r: 'abc' is not a quantity")

        obj = vmi("2Mi")  # the user fixes it: tried at once, not after the backoff
        clock.t = 7.5
        assert await each.run("VirtualMachineInstance", obj, "RetuneFailed", work)
        assert informer.obj["status"]["conditions"] == []

    asyncio.run(go())


def test_an_unexpected_exception_is_reported_as_an_internal_error() -> None:
    async def go() -> None:
        obj = vmi()
        informer, events = RecordingInformer(obj), RecordingEvents()
        each = PerObject(informer, events, ManualClock())  # type: ignore[arg-type]

        async def work() -> None:
            raise KeyError("metadata")

        assert not await each.run("VirtualMachineInstance", obj, "PlacementFailed", work)
        message = informer.obj["status"]["conditions"][0]["message"]
        assert message.startswith("internal error (KeyError: 'metadata'); see the test log")

    asyncio.run(go())
