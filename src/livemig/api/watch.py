"""A change to one object, as a watch delivers it (the store writes these, clients read them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

EventType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True, slots=True)
class WatchEvent:
    revision: int
    type: EventType
    object: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "revision": self.revision, "object": self.object}
