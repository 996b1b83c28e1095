"""A VMI's runtime status, typed: where it runs, in what state, and why not if it does not.

Read with :meth:`VMIStatus.of`; written with the transitions below (placed, running, handed
over, failed), each of which returns None when it no longer applies, for ``modify``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from livemig.api.status import condition


class VMIPhase(StrEnum):
    """KubeVirt's VirtualMachineInstance phases."""

    PENDING = ""
    SCHEDULED = "Scheduled"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @classmethod
    def parse(cls, value: object) -> VMIPhase:
        try:
            return cls(str(value or ""))
        except ValueError:
            return cls.PENDING


@dataclass(frozen=True, slots=True)
class VMIStatus:
    """A VMI's runtime status: where it runs, in what state, and why not if it does not."""

    phase: VMIPhase = VMIPhase.PENDING
    node: str | None = None
    reason: str | None = None
    #: The last migration's summary (KubeVirt's ``status.migrationState``), as written.
    migration: Mapping[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.phase in (VMIPhase.SUCCEEDED, VMIPhase.FAILED)

    @property
    def placed(self) -> bool:
        return self.node is not None or self.finished

    def on(self, node: str) -> bool:
        """Assigned to ``node`` and not over."""
        return self.node == node and not self.finished

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> VMIStatus:
        status = obj.get("status") or {}
        return cls(
            VMIPhase.parse(status.get("phase")),
            status.get("nodeName") or None,
            status.get("reason"),
            status.get("migrationState"),
        )


def vmi_scheduled(obj: dict[str, Any], node: str, why: str) -> dict[str, Any] | None:
    """Place a pending VMI on ``node``; None if it already is placed."""
    if VMIStatus.of(obj).placed:
        return None
    status = obj.setdefault("status", {})
    status.update(nodeName=node, phase=VMIPhase.SCHEDULED.value)
    condition(status, "Scheduled", "True", "Scheduled", why)
    return obj


def vmi_running(obj: dict[str, Any], node: str, process: str) -> dict[str, Any]:
    """The VMI runs on ``node`` in ``process`` (named in its Ready condition)."""
    status = obj.setdefault("status", {})
    status.update(nodeName=node, phase=VMIPhase.RUNNING.value)
    status.pop("reason", None)
    condition(status, "Ready", "True", "Running", f"{process} on {node}")
    return obj


def vmi_handed_over(
    obj: dict[str, Any], source: str, target: str, summary: Mapping[str, Any]
) -> dict[str, Any] | None:
    """A migration moved the VMI from ``source`` to ``target``; None if it is not (any more)
    on ``source`` (written already, or it failed meanwhile)."""
    current = VMIStatus.of(obj)
    if current.node != source or current.finished:
        return None
    status = obj.setdefault("status", {})
    status.update(nodeName=target, migrationState=dict(summary))
    condition(status, "Ready", "True", "Migrated", f"moved to {target}; {target} takes over")
    return obj


def vmi_failed(obj: dict[str, Any], reason: str, node: str | None = None) -> dict[str, Any] | None:
    """The VMI's guest is gone (its QEMU died, its state was split): Failed, with why; None if
    it is already finished, or no longer on ``node`` when one is given."""
    current = VMIStatus.of(obj)
    if current.finished or (node is not None and current.node != node):
        return None
    status = obj.setdefault("status", {})
    status.update(phase=VMIPhase.FAILED.value, reason=reason)
    condition(status, "Ready", "False", "Failed", reason)
    return obj
