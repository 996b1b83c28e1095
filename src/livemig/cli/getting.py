"""``get``, ``describe`` and ``delete`` with kubectl's habits: ``KIND NAME…`` or ``KIND/NAME``,
short and plural kind names, ``-n NS`` / ``-A``, ``-l SELECTOR``, AGE columns, ``-o wide``,
``-o name``, ``-o jsonpath=…``, "No resources found in NS namespace.", and ``-w`` rows that
stay under one header. Without ``-n``, a name is looked up in every namespace: the only match
is used, several are an error that lists them."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import yaml

from livemig.api.lifecycle import Figures, MigrationStatus
from livemig.api.models import KINDS, Resource, resolve_kind
from livemig.api.quantity import human_bytes
from livemig.api.status import age as age_of
from livemig.api.status import node_ready
from livemig.api.vmi_status import VMIPhase, VMIStatus
from livemig.cli.jsonpath import render
from livemig.client import ApiClient
from livemig.clock import RealClock
from livemig.clusterview import can_migrate_now, inventory_of, node_views
from livemig.errors import NotFound, UsageError
from livemig.inventory import Inventory
from livemig.policy import effective_configuration
from livemig.scheduling import NodeView
from livemig.server.selectors import parse_selector

VMIM = "VirtualMachineInstanceMigration"
VMI = "VirtualMachineInstance"
DEFAULT_NAMESPACE = "default"


def kind_or_error(text: str) -> type[Resource]:
    cls = resolve_kind(text)
    if cls is None:
        known = ", ".join(sorted(k.lower() for k in KINDS))
        raise UsageError(
            f"unknown kind {text!r}: use vm, vmi, vmim (migrations), mp (policies), hco, "
            f"node, ns or event — or one of {known}"
        )
    return cls


@dataclass(frozen=True, slots=True)
class Target:
    """What the command line names: a kind and zero or more object names."""

    cls: type[Resource]
    names: tuple[str, ...]


def targets(args: Sequence[str]) -> Target:
    """``KIND [NAME…]`` or ``KIND/NAME…`` (one kind)."""
    if not args:
        raise UsageError("name a kind: livemig get vmis (or vms, vmim, nodes, events, …)")
    if "/" in args[0]:
        kinds, names = set(), []
        for a in args:
            kind, sep, name = a.partition("/")
            if not sep or not name:
                raise UsageError(
                    f"{a!r}: give every object as KIND/NAME when the first one is (or KIND NAME…)"
                )
            kinds.add(kind_or_error(kind))
            names.append(name)
        if len(kinds) > 1:
            raise UsageError("one kind at a time, please: " + " ".join(args))
        return Target(kinds.pop(), tuple(names))
    return Target(kind_or_error(args[0]), tuple(args[1:]))


def object_name(obj: dict[str, Any]) -> str:
    """kubectl's ``-o name``: ``virtualmachineinstance.kubevirt.io/vm-0``, ``node/node-1``."""
    kind = str(obj.get("kind", ""))
    cls = KINDS.get(kind)
    api = str(obj.get("apiVersion") or (cls.API_VERSIONS[0] if cls else "v1"))
    group = api.split("/")[0] if "/" in api else ""
    return f"{kind.lower()}{'.' + group if group else ''}/{obj['metadata']['name']}"


# --- finding objects ------------------------------------------------------------------------


async def find(
    client: ApiClient,
    target: Target,
    namespace: str | None,
    all_namespaces: bool,
    selector: str | None,
) -> tuple[list[dict[str, Any]], int, str | None]:
    """The objects named (or all, under ``selector``), their revision, and the namespace the
    listing was limited to (None: all, or a cluster-scoped kind)."""
    cls = target.cls
    scoped = cls.NAMESPACED
    if selector:
        parse_selector(selector)  # a clear error here rather than the server's 400
    if all_namespaces or not scoped:
        where = None
    elif namespace is not None:
        where = namespace
    else:
        where = None if target.names else DEFAULT_NAMESPACE
    items, rev = await client.list(cls.KIND, where, label_selector=selector)
    if not target.names:
        return _sorted(items), rev, where if scoped else None
    found = []
    for name in target.names:
        matches = [o for o in items if o["metadata"]["name"] == name]
        if not matches:
            place = f" in namespace {where}" if where else " in any namespace"
            place = place if scoped else ""
            raise NotFound(f"{cls.KIND} {name!r} not found{place}")
        if len(matches) > 1 and not all_namespaces:
            spaces = ", ".join(sorted(str(o["metadata"].get("namespace")) for o in matches))
            raise UsageError(
                f"{cls.KIND} {name!r} exists in namespaces {spaces}: pick one with -n NAMESPACE"
            )
        found.extend(matches)
    return found, rev, where if scoped else None


def _sorted(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if items and items[0].get("kind") == "Event":
        return sorted(items, key=lambda e: str(e.get("lastTimestamp") or ""))
    return sorted(
        items, key=lambda o: (str(o["metadata"].get("namespace") or ""), o["metadata"]["name"])
    )


# --- ages and tables ------------------------------------------------------------------------


def age(stamp: object) -> str:
    """kubectl's age of ``stamp``, from now."""
    return age_of(stamp, RealClock().wall())


#: Column widths a watch starts with, so that later rows (PreparingTarget after Pending) stay
#: aligned under the header.
WATCH_WIDTHS = {
    "NAMESPACE": 12,
    "NAME": 24,
    "VMI": 16,
    "PHASE": 15,
    "STATUS": 33,
    "SOURCE": 10,
    "TARGET": 10,
    "NODENAME": 10,
    "LAST SEEN": 9,
    "TYPE": 7,
    "REASON": 19,
    "OBJECT": 48,
    "MODE": 8,
    "POLICY": 16,
}


class Rows:
    """Plain aligned columns, 3 spaces apart like kubectl; the widths of the first print are
    kept, so ``-w`` rows line up under the header."""

    def __init__(self, headers: list[str], watching: bool = False) -> None:
        self.headers = headers
        self.widths: list[int] | None = None
        # A watch's later rows are not known yet: leave room for the usual values.
        self.minimum = WATCH_WIDTHS if watching else {}

    def lines(self, rows: list[list[str]], header: bool) -> list[str]:
        if self.widths is None:
            self.widths = [
                max([len(h), self.minimum.get(h, 0), *(len(r[i]) for r in rows)])
                for i, h in enumerate(self.headers)
            ]
        shown = ([self.headers] if header else []) + rows
        return [
            "   ".join(cell.ljust(w) for cell, w in zip(row, self.widths, strict=False)).rstrip()
            for row in shown
        ]


@dataclass
class Context:
    """Other objects some columns need (node addresses, VMIs per node, a VM's VMI, where a
    VMI could go now)."""

    nodes: dict[str, dict[str, Any]]
    vmis: list[dict[str, Any]]
    migrations: list[dict[str, Any]]
    network: str | None = None  # the cluster's dedicated migration network

    @classmethod
    async def load(cls, client: ApiClient, kind: str, wide: bool = False) -> Context:
        nodes: list[dict[str, Any]] = []
        vmis: list[dict[str, Any]] = []
        migrations: list[dict[str, Any]] = []
        network = None
        if kind in (VMI, "Node"):
            nodes, _ = await client.list("Node")
        if kind in ("Node", "VirtualMachine") or (kind == VMI and wide):
            vmis, _ = await client.list(VMI)
        if kind == "Node" or (kind == VMI and wide):
            migrations, _ = await client.list(VMIM)
        if kind == VMI and wide:
            network = await cluster_network(client)
        return cls({n["metadata"]["name"]: n for n in nodes}, vmis, migrations, network)

    @cached_property
    def views(self) -> list[NodeView]:
        return node_views(list(self.nodes.values()), self.vmis, self.migrations)


async def cluster_inventory(client: ApiClient) -> Inventory:
    """The cluster's settings objects (HyperConverged, KubeVirt) as the rules read them."""
    objs = []
    for kind in ("HyperConverged", "KubeVirt"):
        objs += (await client.list(kind))[0]
    return inventory_of(objs)


async def cluster_network(client: ApiClient) -> str | None:
    """The cluster's liveMigrationConfig.network (None: the primary network)."""
    return effective_configuration((await cluster_inventory(client)).cluster).network


def _migratable(o: dict[str, Any], ctx: Context) -> str:
    """Whether another node could take the VMI now (room, nodeSelector, migration network)."""
    return str(can_migrate_now(o, ctx.views, ctx.network))


def _address(node: dict[str, Any] | None) -> str:
    for a in ((node or {}).get("status") or {}).get("addresses") or []:
        return str(a.get("address", ""))
    return ""


def _trouble(status: dict[str, Any]) -> str:
    """The reason of a condition that says something is wrong (``describe`` has the message)."""
    for c in status.get("conditions") or []:
        if c.get("type") in ("Scheduled", "Synchronized") and c.get("status") == "False":
            return str(c.get("reason") or "")
    return ""


Column = tuple[str, Callable[[dict[str, Any], Context], str]]


def _vmi_ready(o: dict[str, Any], _: Context) -> str:
    return "True" if VMIStatus.of(o).phase is VMIPhase.RUNNING else "False"


def _memory(o: dict[str, Any], _: Context) -> str:
    domain = (o.get("spec") or {}).get("domain") or {}
    guest = (domain.get("memory") or {}).get("guest")
    request = ((domain.get("resources") or {}).get("requests") or {}).get("memory")
    return str(guest or request or "")


def _progress(o: dict[str, Any], _: Context) -> str:
    f = MigrationStatus.of(o).figures or Figures()
    if not f.total:
        return ""
    return f"{100 * (f.total - f.remaining) / f.total:.0f}%"


def _vm_status(o: dict[str, Any], ctx: Context) -> str:
    key = (o["metadata"].get("namespace"), o["metadata"]["name"])
    for v in ctx.vmis:
        if (v["metadata"].get("namespace"), v["metadata"]["name"]) == key:
            return VMIStatus.of(v).phase.value or "Pending"
    return "Stopped"


def _node_status(o: dict[str, Any], _: Context) -> str:
    words = ["Ready" if node_ready(o) else "NotReady"]
    if (o.get("spec") or {}).get("unschedulable"):
        words.append("SchedulingDisabled")
    drain = (o.get("status") or {}).get("drain") or {}
    if drain and not drain.get("completionTimestamp"):
        words.append("Draining")
    return ",".join(words)


def _node_vms(o: dict[str, Any], ctx: Context) -> str:
    return str(sum(VMIStatus.of(v).on(o["metadata"]["name"]) for v in ctx.vmis))


def _node_migrating(o: dict[str, Any], ctx: Context) -> str:
    name = o["metadata"]["name"]
    return str(
        sum(
            (st := MigrationStatus.of(m)).holds_slot and st.source_node == name
            for m in ctx.migrations
        )
    )


def _drain_words(o: dict[str, Any], _: Context) -> str:
    drain = (o.get("status") or {}).get("drain") or {}
    if not drain:
        return ""
    if drain.get("completionTimestamp"):
        return "drained"
    return (
        f"{drain.get('vmsLeft', 0)} left, {drain.get('inFlight', 0)} migrating, "
        f"{drain.get('queued', 0)} queued, {len(drain.get('blocked') or [])} blocked"
    )


def _involved(o: dict[str, Any], _: Context) -> str:
    inv = o.get("involvedObject") or {}
    return f"{str(inv.get('kind', '')).lower()}/{inv.get('name', '')}"


def _created(o: dict[str, Any], _: Context) -> str:
    return age(o["metadata"].get("creationTimestamp"))


COLUMNS: dict[str, tuple[list[Column], list[Column]]] = {
    "VirtualMachine": (
        [
            ("NAME", lambda o, _: o["metadata"]["name"]),
            ("AGE", _created),
            ("STATUS", _vm_status),
            ("READY", lambda o, c: str(_vm_status(o, c) == "Running")),
        ],
        [
            (
                "RUN-STRATEGY",
                lambda o, _: str(
                    o["spec"].get("runStrategy") or f"running={o['spec'].get('running')}"
                ),
            )
        ],
    ),
    VMI: (
        [
            ("NAME", lambda o, _: o["metadata"]["name"]),
            ("AGE", _created),
            ("PHASE", lambda o, _: VMIStatus.of(o).phase.value or "Pending"),
            ("NODENAME", lambda o, _: VMIStatus.of(o).node or ""),
            ("READY", _vmi_ready),
        ],
        [
            ("ADDRESS", lambda o, c: _address(c.nodes.get(VMIStatus.of(o).node or ""))),
            ("LIVE-MIGRATABLE", _migratable),
            ("MEMORY", _memory),
            ("PROBLEM", lambda o, _: _trouble(o.get("status") or {})),
        ],
    ),
    VMIM: (
        [
            ("NAME", lambda o, _: o["metadata"]["name"]),
            ("PHASE", lambda o, _: MigrationStatus.of(o).phase.value or "Pending"),
            ("VMI", lambda o, _: str((o.get("spec") or {}).get("vmiName", ""))),
            ("SOURCE", lambda o, _: MigrationStatus.of(o).source_node or ""),
            ("TARGET", lambda o, _: MigrationStatus.of(o).target_node or ""),
            ("AGE", _created),
        ],
        [
            ("MODE", lambda o, _: m.value if (m := MigrationStatus.of(o).mode) else ""),
            ("PROGRESS", _progress),
            ("POLICY", lambda o, _: MigrationStatus.of(o).policy or ""),
            (
                "REASON",
                lambda o, _: MigrationStatus.of(o).reason or _trouble(o.get("status") or {}),
            ),
        ],
    ),
    "Node": (
        [
            ("NAME", lambda o, _: o["metadata"]["name"]),
            ("STATUS", _node_status),
            ("VMS", _node_vms),
            ("MIGRATING", _node_migrating),
            (
                "MEMORY",
                lambda o, _: human_bytes(
                    ((o.get("status") or {}).get("capacity") or {}).get("memoryBytes", 0)
                ),
            ),
            ("AGE", _created),
        ],
        [("ADDRESS", lambda o, _: _address(o)), ("DRAIN", _drain_words)],
    ),
    "Event": (
        [
            ("LAST SEEN", lambda o, _: age(o.get("lastTimestamp"))),
            ("TYPE", lambda o, _: str(o.get("type") or "")),
            ("REASON", lambda o, _: str(o.get("reason") or "")),
            ("OBJECT", _involved),
            ("MESSAGE", lambda o, _: str(o.get("message") or "")),
        ],
        [
            ("COUNT", lambda o, _: str(o.get("count") or 1)),
            ("FIRST SEEN", lambda o, _: age(o.get("firstTimestamp"))),
            ("SOURCE", lambda o, _: str((o.get("source") or {}).get("component") or "")),
        ],
    ),
}
GENERIC: tuple[list[Column], list[Column]] = (
    [("NAME", lambda o, _: o["metadata"]["name"]), ("AGE", _created)],
    [],
)


class Printer:
    """Prints objects of one kind in one output format, first as a listing, then (``-w``) as
    changes."""

    def __init__(
        self, cls: type[Resource], output: str, all_namespaces: bool, watching: bool = False
    ) -> None:
        self.cls = cls
        self.output = output
        fmt = output.split("=", 1)[0]
        if fmt not in ("table", "wide", "yaml", "json", "name", "jsonpath"):
            raise UsageError(
                f"-o {output!r}: use table, wide, yaml, json, name or jsonpath=TEMPLATE"
            )
        if fmt == "jsonpath" and "=" not in output:
            raise UsageError(
                "-o jsonpath needs a template: -o jsonpath='{.items[*].metadata.name}'"
            )
        self.format = fmt
        base, wide = COLUMNS.get(cls.KIND, GENERIC)
        columns = base + (wide if fmt == "wide" else [])
        if all_namespaces and cls.NAMESPACED:
            columns = [("NAMESPACE", lambda o, _: str(o["metadata"].get("namespace") or ""))]
            columns += base + (wide if fmt == "wide" else [])
        self.columns = columns
        self.rows = Rows([h for h, _ in columns], watching)

    def listing(
        self, items: list[dict[str, Any]], ctx: Context, one: bool, namespace: str | None
    ) -> None:
        """The first print. ``one``: a single object was asked for by name (not a List)."""
        if self.format in ("yaml", "json", "jsonpath"):
            data: Any = (
                items[0]
                if one and len(items) == 1
                else {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {}}
            )
            self._dump(data)
            return
        if not items:
            where = f" in {namespace} namespace" if namespace else ""
            sys.stderr.write(f"No resources found{where}.\n")
            return
        if self.format == "name":
            sys.stdout.write("".join(object_name(o) + "\n" for o in items))
            return
        self._table(items, ctx, header=True)

    def change(self, obj: dict[str, Any], ctx: Context, deleted: bool) -> None:
        """One ``-w`` update."""
        if self.format in ("yaml", "json", "jsonpath"):
            self._dump(obj, stream=True)
        elif self.format == "name":
            sys.stdout.write(object_name(obj) + (" (deleted)" if deleted else "") + "\n")
        else:
            self._table([obj], ctx, header=self.rows.widths is None, deleted=deleted)
        sys.stdout.flush()

    def _table(
        self, items: list[dict[str, Any]], ctx: Context, header: bool, deleted: bool = False
    ) -> None:
        rows = [[fn(o, ctx) for _, fn in self.columns] for o in items]
        lines = self.rows.lines(rows, header)
        if deleted:  # at the end of the row, so the columns stay where they are
            lines[-1] += "   (deleted)"
        sys.stdout.write("".join(line + "\n" for line in lines))

    def _dump(self, data: Any, stream: bool = False) -> None:
        if self.format == "json":
            sys.stdout.write(json.dumps(data, indent=2) + "\n")
        elif self.format == "yaml":
            sys.stdout.write(("---\n" if stream else "") + yaml.safe_dump(data, sort_keys=False))
        else:
            sys.stdout.write(render(self.output.split("=", 1)[1], data))
            if stream:
                sys.stdout.write("\n")
