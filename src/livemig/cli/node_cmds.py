"""Node maintenance: ``cordon``, ``uncordon`` and ``drain`` (SPEC §5), kubectl's verbs.

``drain`` cordons the node and puts KubeVirt's drain taint on it; the controller does the rest
(one evacuation migration per VMI, paced by the cluster's limits, retried with backoff) and
keeps the drain's progress in the Node's status. ``--wait`` follows that progress;
``--dry-run`` says what would move, what blocks and why, and changes nothing.
"""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from livemig.api.lifecycle import Figures, MigrationObject, Phase
from livemig.api.quantity import short_bytes
from livemig.api.status import epoch_seconds, timestamp
from livemig.cli.cluster_cmds import (
    ServerOption,
    StateOption,
    TokenOption,
    connect,
    err,
    out,
    run_async,
)
from livemig.cli.getting import cluster_inventory
from livemig.client import ApiClient
from livemig.clock import RealClock
from livemig.clusterview import cordon_node, drain_key, drain_taint, node_views, residents
from livemig.evacuation import Plan, Step, plan
from livemig.policy import effective_configuration

VMIM = "VirtualMachineInstanceMigration"
VMI = "VirtualMachineInstance"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float:
    """kubectl's durations (``90s``, ``10m``, ``1h30m``, ``0`` = no limit) in seconds."""
    text = text.strip()
    if text == "0":
        return 0.0
    if re.fullmatch(r"\d+(\.\d+)?", text):
        raise typer.BadParameter(f"{text!r} needs a unit: {text}s, {text}m or {text}h")
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise typer.BadParameter(f"{text!r} is not a duration (like 90s, 10m, 1h30m, or 0)")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _elapsed(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


async def set_node(client: ApiClient, node: str, cordon: bool, drain: bool | None) -> bool:
    """Cordon/uncordon ``node``; add (True) or remove (False) the drain taint. True if anything
    changed."""
    key = await _taint_key(client)
    changed = False

    def change(o: dict[str, Any]) -> dict[str, Any] | None:
        nonlocal changed
        changed = cordon_node(o, cordon, drain, key, timestamp(datetime.now(UTC)))
        return o if changed else None

    await client.modify("Node", node, None, change)
    return changed


async def _taint_key(client: ApiClient) -> str:
    """The drain taint key the cluster uses (KubeVirt's nodeDrainTaintKey, else the default)."""
    return drain_key((await cluster_inventory(client)).cluster.settings)


async def drain_plan(client: ApiClient, node: str) -> tuple[Plan, dict[str, Any]]:
    """What a drain of ``node`` would do now, judged by the controller's own rules."""
    raw = await client.get("Node", node)
    nodes, _ = await client.list("Node")
    vmis, _ = await client.list(VMI)
    migrations, _ = await client.list(VMIM)
    inventory = await cluster_inventory(client)
    views = node_views(nodes, vmis, migrations)
    now = RealClock().wall()
    started = _drain_started(raw) or now
    return (
        plan(
            node,
            residents(node, vmis),
            [MigrationObject.of(m) for m in migrations],
            views,
            inventory.cluster.eviction_strategy,
            now,
            started,
            network=effective_configuration(inventory.cluster).network,
        ),
        raw,
    )


def _drain_started(raw: dict[str, Any]) -> float | None:
    return epoch_seconds(((raw.get("status") or {}).get("drain") or {}).get("startTimestamp"))


_WORDS = {
    Step.MIGRATE: "will migrate",
    Step.IN_FLIGHT: "migrating",
    Step.QUEUED: "queued",
    Step.BACKING_OFF: "backing off",
    Step.WAITING: "waiting",
    Step.BLOCKED: "BLOCKED",
    Step.SHUT_DOWN: "will shut down",
}


def plan_table(p: Plan, memory: dict[tuple[str, str], int]) -> Table:
    table = Table(box=None, pad_edge=False, padding=(0, 2))
    for h in ("VMI", "MEMORY", "EVICTION", "ACTION", "WHY"):
        table.add_column(h)
    for d in p.decisions:
        table.add_row(
            f"{d.vmi[0]}/{d.vmi[1]}",
            short_bytes(memory.get(d.vmi, 0)),
            d.strategy.value,
            _WORDS[d.step],
            d.why,
        )
    return table


def progress_line(node: str, drain: dict[str, Any], elapsed: float) -> str:
    left = int(drain.get("vmsLeft", 0))
    parts = [
        f"{node}: {left} VMI{'s' if left != 1 else ''} left",
        f"{drain.get('inFlight', 0)} migrating",
        f"{drain.get('queued', 0)} queued",
        f"{len(drain.get('blocked') or [])} blocked",
        f"{drain.get('migrated', 0)} migrated",
        f"moved {short_bytes(int(drain.get('bytesMoved', 0)))}",
    ]
    rate = drain.get("bytesPerSecond")
    if rate:
        parts.append(f"at {short_bytes(int(rate))}/s")
    eta = drain.get("estimatedSecondsLeft")
    if eta is not None and left:
        parts.append(f"about {_elapsed(float(eta))} left")
    parts.append(f"{_elapsed(elapsed)} so far")
    return ", ".join(parts)


def _in_flight_table(node: str, migrations: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, padding=(0, 2))
    for h in ("MIGRATION", "VMI", "PHASE", "MODE", "TARGET", "PROGRESS", "RATE"):
        table.add_column(h)
    for raw in migrations:
        m = MigrationObject.of(raw)
        if m.evacuating != node or not m.status.is_active:
            continue
        f = m.status.figures or Figures()
        pct = f"{100 * (f.total - f.remaining) / f.total:.0f}%" if f.total else ""
        table.add_row(
            m.name,
            m.vmi_name,
            m.status.phase.value or "Pending",
            m.status.mode.value if m.status.mode else "",
            m.status.target_node or "",
            pct,
            f"{short_bytes(f.transfer_rate)}/s" if f.transfer_rate else "",
        )
    return table


async def follow_drain(client: ApiClient, node: str, give_up_after: float) -> bool:
    """Show the drain's progress until the node has no VMI (True) or ``give_up_after``
    seconds pass (0: never)."""
    clock = RealClock()
    began = clock.now()
    live_screen = sys.stdout.isatty()
    last_line = ""
    blocked_seen: set[str] = set()
    with (
        Live(console=out, auto_refresh=False, transient=False) if live_screen else _NoLive() as live
    ):
        while True:
            raw = await client.get("Node", node)
            drain = (raw.get("status") or {}).get("drain") or {}
            started = _drain_started(raw)
            elapsed = clock.wall() - started if started else clock.now() - began
            line = (
                progress_line(node, drain, elapsed)
                if drain
                else f"{node}: waiting for the controller"
            )
            done = bool(drain.get("completionTimestamp"))
            if live_screen:
                migrations, _ = await client.list(VMIM)
                blocked = Text(
                    "\n".join(
                        f"blocked: {b['vmi']}: {b['reason']}" for b in drain.get("blocked") or []
                    )
                )
                live.update(
                    Group(Text(line), _in_flight_table(node, migrations), blocked), refresh=True
                )
            else:
                counts = line.split(", moved")[0]
                if counts != last_line:
                    out.print(line, markup=False)
                    last_line = counts
                for b in drain.get("blocked") or []:
                    text = f"{b['vmi']}: {b['reason']}"
                    if text not in blocked_seen:
                        out.print(f"blocked: {text}", markup=False)
                        blocked_seen.add(text)
            if done:
                return True
            if give_up_after and clock.now() - began >= give_up_after:
                return False
            await clock.sleep(0.5)


class _NoLive:
    def __enter__(self) -> _NoLive:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, *args: object, **kwargs: object) -> None:
        return None


async def drain_summary(client: ApiClient, node: str) -> Table:
    """One row per evacuation of this drain: where each VM went, how long it took, outcome."""
    raw = await client.get("Node", node)
    started = _drain_started(raw) or 0.0
    migrations, _ = await client.list(VMIM)
    table = Table(box=None, pad_edge=False, padding=(0, 2), title=f"evacuations off {node}")
    for h in (
        "VMI",
        "MIGRATION",
        "POLICY",
        "TARGET",
        "MODE",
        "DURATION",
        "DOWNTIME",
        "MOVED",
        "OUTCOME",
    ):
        table.add_column(h)
    rows = []
    for m_raw in migrations:
        m = MigrationObject.of(m_raw)
        created = epoch_seconds(m.created)
        if m.evacuating != node or (created and created < started - 1):
            continue
        st = m.status
        outcome = st.phase.value or "Pending"
        if st.phase is Phase.FAILED:
            outcome += f": {st.reason}"
        rows.append(
            (
                m.created,
                [
                    f"{m.namespace}/{m.vmi_name}",
                    m.name,
                    st.policy or "(cluster)",
                    st.target_node or "",
                    st.mode.value if st.mode else "",
                    f"{st.duration:.1f} s" if st.duration else "",
                    f"{st.downtime_ms} ms" if st.downtime_ms is not None else "",
                    short_bytes((st.figures or Figures()).processed),
                    outcome,
                ],
            )
        )
    for _, row in sorted(rows):
        table.add_row(*row)
    return table


def register_nodes(app: typer.Typer) -> None:
    @app.command()
    def cordon(
        node: Annotated[str, typer.Argument(help="The node to mark unschedulable.")],
        server: ServerOption = None,
        token: TokenOption = None,
        state: StateOption = None,
    ) -> None:
        """Mark a node unschedulable: no new VM and no migration lands on it; its VMs stay."""

        async def main() -> None:
            async with connect(server, token, state) as client:
                changed = await set_node(client, node, cordon=True, drain=None)
                out.print(f"node/{node} {'cordoned' if changed else 'already cordoned'}")

        run_async(main())

    @app.command()
    def uncordon(
        node: Annotated[str, typer.Argument(help="The node to make schedulable again.")],
        server: ServerOption = None,
        token: TokenOption = None,
        state: StateOption = None,
    ) -> None:
        """Make a node schedulable again and stop its drain: evacuations that have not begun
        moving memory are cancelled (those moving memory finish)."""

        async def main() -> None:
            async with connect(server, token, state) as client:
                raw = await client.get("Node", node)
                draining = bool((raw.get("status") or {}).get("drain")) or bool(
                    drain_taint(raw, await _taint_key(client))
                )
                changed = await set_node(client, node, cordon=False, drain=False)
                out.print(f"node/{node} {'uncordoned' if changed else 'already uncordoned'}")
                if draining:
                    out.print(
                        f"the drain of {node} is stopped: pending evacuations are cancelled",
                        markup=False,
                    )

        run_async(main())

    @app.command()
    def drain(
        node: Annotated[str, typer.Argument(help="The node to empty.")],
        wait: Annotated[
            bool,
            typer.Option("--wait", help="Follow the drain until the node has no VMI."),
        ] = False,
        timeout: Annotated[
            str,
            typer.Option(
                "--timeout",
                metavar="DURATION",
                help="With --wait: stop waiting after this long (90s, 10m, 1h; 0 = no limit). "
                "The drain itself goes on until `livemig uncordon`.",
            ),
        ] = "0",
        dry_run: Annotated[
            bool,
            typer.Option(
                "--dry-run",
                help="Only list what would move, what would be shut down, what blocks and why.",
            ),
        ] = False,
        server: ServerOption = None,
        token: TokenOption = None,
        state: StateOption = None,
    ) -> None:
        """Cordon a node and live-migrate every VM off it, under the cluster's limits.

        Each VMI's eviction strategy (its own spec.evictionStrategy, else the cluster's, else
        LiveMigrate) decides: LiveMigrate — it migrates, and if it cannot, it blocks the drain
        and the drain says why; LiveMigrateIfPossible — it migrates, or is shut down if it
        cannot; None or External — it blocks. A failed evacuation is retried after 20 s,
        doubling up to 5 min. The drain ends when the node has no VMI; `livemig uncordon`
        stops it."""
        limit = parse_duration(timeout)

        async def main() -> bool:
            async with connect(server, token, state) as client:
                p, raw = await drain_plan(client, node)
                memory = {
                    (r.namespace, r.name): r.memory
                    for r in residents(node, (await client.list(VMI))[0])
                }
                if dry_run:
                    if not p.decisions:
                        out.print(f"node/{node} has no VMI: a drain would only cordon it")
                        return True
                    out.print(f"a drain of node/{node} would (nothing is changed now):")
                    out.print(plan_table(p, memory))
                    blocked = p.of(Step.BLOCKED)
                    if blocked:
                        out.print(
                            f"{len(blocked)} VMI(s) would block the drain; it would not finish "
                            "until they are moved, stopped or given another eviction strategy",
                            markup=False,
                        )
                    return True
                changed = await set_node(client, node, cordon=True, drain=True)
                if changed:
                    out.print(f"node/{node} cordoned")
                    what = "draining"
                else:
                    started = _drain_started(raw)
                    since = f" for {_elapsed(RealClock().wall() - started)}" if started else ""
                    out.print(f"node/{node} already cordoned")
                    what = f"already draining{since}"
                out.print(
                    f"node/{node} {what}: {len(p.decisions)} VMI(s) to move"
                    + ("" if wait else f"; follow with `livemig drain {node} --wait`"),
                    markup=False,
                )
                for d in p.of(Step.BLOCKED):
                    err.print(f"blocked: {d.vmi[0]}/{d.vmi[1]}: {d.why}", markup=False)
                if not wait:
                    return True
                finished = await follow_drain(client, node, limit)
                out.print(await drain_summary(client, node))
                raw = await client.get("Node", node)
                drain_ = (raw.get("status") or {}).get("drain") or {}
                if finished:
                    out.print(
                        f"node/{node} drained: {drain_.get('migrated', 0)} VMI(s) migrated, "
                        f"{short_bytes(int(drain_.get('bytesMoved', 0)))} moved",
                        markup=False,
                    )
                    return True
                left = int(drain_.get("vmsLeft", 0))
                err.print(
                    f"error: timed out after {timeout} waiting for node/{node} to drain: "
                    f"{left} VMI(s) left; the drain goes on (`livemig uncordon {node}` stops it)",
                    markup=False,
                )
                for b in drain_.get("blocked") or []:
                    err.print(f"blocked: {b['vmi']}: {b['reason']}", markup=False)
                return False

        if not run_async(main()):
            raise typer.Exit(1)
