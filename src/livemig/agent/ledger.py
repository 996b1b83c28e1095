"""The node agent's ledger: which QEMU on this node is which, and what it still owes the API.

Kept in ``STATE_DIR/vms.json`` and written (atomically) *before* the fact it records can be
lost: an incoming VM is recorded before its QEMU starts, and a migration's outcome before the
agent tries to write it to the API server. So after a ``kill -9`` the agent finds every QEMU it
started, and every outcome the server has not yet taken.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from livemig.hypervisor import VMSpec


def spec_to_json(spec: VMSpec, working_set: int | None = None) -> dict[str, Any]:
    out = asdict(spec)
    out["extra_args"] = list(spec.extra_args)
    if working_set is not None:
        out["working_set"] = working_set
    return out


def spec_from_json(data: dict[str, Any]) -> VMSpec:
    return VMSpec(**{**data, "extra_args": tuple(data.get("extra_args") or ())})


@dataclass(frozen=True, slots=True)
class LocalEntry:
    """A VMI that runs here: its QEMU's handle and how it was started."""

    handle: str
    spec: VMSpec


@dataclass(frozen=True, slots=True)
class IncomingEntry:
    """The target side of a migration: the VMI it brings and its (waiting) QEMU."""

    vmi: str  # namespace/name
    handle: str
    spec: VMSpec


@dataclass
class Ledger:
    path: Path
    local: dict[str, LocalEntry] = field(default_factory=dict)  # "ns/vmi"
    incoming: dict[str, IncomingEntry] = field(default_factory=dict)  # "ns/migration"
    #: Outcomes of migrations that ended here and are not yet in the API: "ns/migration" →
    #: what to write (see NodeAgent._outcome_record).
    outbox: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Ledger:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls(path)
        if "local" not in data:  # the first format: only local VMs, by "folder"
            data = {
                "local": {k: {"handle": v["folder"], "spec": v["spec"]} for k, v in data.items()}
            }
        return cls(
            path,
            {
                k: LocalEntry(v["handle"], spec_from_json(v["spec"]))
                for k, v in data.get("local", {}).items()
            },
            {
                k: IncomingEntry(v["vmi"], v["handle"], spec_from_json(v["spec"]))
                for k, v in data.get("incoming", {}).items()
            },
            dict(data.get("outbox", {})),
        )

    def save(self) -> None:
        data = {
            "local": {
                k: {"handle": e.handle, "spec": spec_to_json(e.spec)} for k, e in self.local.items()
            },
            "incoming": {
                k: {"vmi": e.vmi, "handle": e.handle, "spec": spec_to_json(e.spec)}
                for k, e in self.incoming.items()
            },
            "outbox": self.outbox,
        }
        # Write and rename: a killed agent leaves the old ledger or the new one, never half of
        # one. No fsync: it guards against the host losing power, which loses the QEMUs too,
        # and on busy virtual disks it was seen to stall for tens of seconds.
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.path)
