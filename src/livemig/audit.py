"""Does every VM run exactly once? An audit of one machine's livemig state folder against its
process table and the API: the question to ask after a crash or a fault.

A VM passes when exactly one QEMU runs its guest, that QEMU is in the ledger of the node its
VMI names (so an agent manages it), and the VMI says Running with that process in its Ready
condition. The incoming QEMU of a migration under way is a managed second process, not a second
copy of the guest. A QEMU under the state folder that no ledger holds is *unmanaged*: nobody
will stop it, migrate it, or notice it die.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livemig.api.vmi_status import VMIPhase, VMIStatus
from livemig.client import ApiClient
from livemig.errors import NotFound
from livemig.hypervisor.processes import qemu_commands, qemu_folders


def qemu_processes(folder: Path) -> dict[int, str]:
    """pid → command line of the QEMU processes whose files are under ``folder``."""
    found = {}
    for pid, args in qemu_commands().items():
        line = b" ".join(args).decode(errors="replace")
        if str(folder) in line:
            found[pid] = line
    return found


def qemu_folders_under(folder: Path) -> dict[int, str]:
    """pid → the VM folder of each QEMU process under ``folder``."""
    return {pid: str(f) for pid, f in qemu_folders().items() if folder in f.parents}


def ledgers(state: Path) -> dict[str, dict[str, Any]]:
    """node → its agent's ledger, as on disk (``STATE/nodes/NODE/vms.json``)."""
    out = {}
    for path in (state / "nodes").glob("*/vms.json"):
        try:
            out[path.parent.name] = json.loads(path.read_text())
        except (OSError, ValueError):
            out[path.parent.name] = {}  # being rewritten: the next look sees it
    return out


@dataclass
class Audit:
    """What is wrong, per VM, and which QEMUs nobody manages."""

    wrong: dict[str, str] = field(default_factory=dict)  # "ns/name" → what is wrong
    unmanaged: dict[int, str] = field(default_factory=dict)  # pid → folder

    @property
    def ok(self) -> bool:
        return not self.wrong and not self.unmanaged

    def __str__(self) -> str:
        parts = [f"{k}: {v}" for k, v in sorted(self.wrong.items())]
        if self.unmanaged:
            parts.append(f"unmanaged QEMUs: {self.unmanaged}")
        return "; ".join(parts) or "every VM runs exactly once"


async def audit(client: ApiClient, state: Path, vms: list[tuple[str, str]]) -> Audit:
    """Check each (namespace, name) VM against the API, the ledgers and the process table."""
    procs = qemu_folders_under(state)
    books = ledgers(state)
    managed = {
        e.get("handle"): node
        for node, book in books.items()
        for part in ("local", "incoming")
        for e in (book.get(part) or {}).values()
    }
    result = Audit(unmanaged={pid: f for pid, f in procs.items() if f not in managed})
    incoming = {
        e.get("handle") for book in books.values() for e in (book.get("incoming") or {}).values()
    }
    # A migration's incoming QEMU is a managed second process, not a second running guest.
    everything = {
        pid: args for pid, args in qemu_processes(state).items() if procs.get(pid) not in incoming
    }
    for ns, name in vms:
        key = f"{ns}/{name}"
        try:
            vmi = await client.get("VirtualMachineInstance", name, ns)
        except NotFound:
            result.wrong[key] = "no VMI (being restarted?)"
            continue
        st = VMIStatus.of(vmi)
        if st.phase is not VMIPhase.RUNNING or st.node is None:
            result.wrong[key] = f"VMI is {st.phase.value or 'Pending'} ({st.reason})"
            continue
        entry = (books.get(st.node, {}).get("local") or {}).get(key)
        if entry is None:
            result.wrong[key] = f"VMI says {st.node}, whose ledger does not have it"
            continue
        runs = [pid for pid, f in procs.items() if f == entry["handle"]]
        copies = [pid for pid, args in everything.items() if f"guest={ns}_{name} " in args]
        if len(runs) != 1 or len(copies) != 1:
            result.wrong[key] = f"{len(runs)} QEMU in its ledger folder, {len(copies)} in all"
            continue
        ready = next(
            (c for c in vmi["status"].get("conditions", []) if c.get("type") == "Ready"), None
        )
        if ready is None or f"pid {runs[0]} " not in f"{ready.get('message', '')} ":
            result.wrong[key] = f"its Ready condition names another process: {ready}"
    return result
