"""The cluster commands: up, server, controller, agent, apply, get, describe, delete, migrate,
migrate-cancel."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from livemig.api.apply import Verb, to_create, to_update
from livemig.api.lifecycle import Figures, MigrationStatus, Phase
from livemig.api.limits import MAX_BODY_BYTES, MAX_MEMORY_BYTES
from livemig.api.loading import LoadResult, load_paths
from livemig.api.models import Resource, resolve_kind, to_dict
from livemig.api.quantity import human_bytes, parse_quantity, short_bytes
from livemig.api.vmi_status import VMIStatus
from livemig.client import ApiClient
from livemig.clock import RealClock
from livemig.cluster import LocalCluster, default_state_dir, find_cluster
from livemig.errors import AlreadyExists, LivemigError, LoadError, NotFound, QuantityError
from livemig.migration import POSTCOPY_GIVE_UP
from livemig.policy import DefaultsProfile
from livemig.tasks import cancel_and_wait

T = TypeVar("T")
out = Console(highlight=False, width=None if sys.stdout.isatty() else 4000)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 4000)

StateOption = Annotated[
    Path | None,
    typer.Option(
        "--state",
        metavar="DIR",
        help="Cluster state folder (default: $LIVEMIG_STATE or ~/.local/state/livemig).",
    ),
]
ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        metavar="URL",
        envvar="LIVEMIG_SERVER",
        help="API server URL (default: the local `livemig up` cluster).",
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        metavar="TOKEN",
        envvar="LIVEMIG_TOKEN",
        help="Bearer token (default: the local cluster's token file).",
    ),
]
NamespaceOption = Annotated[str | None, typer.Option("-n", "--namespace", metavar="NS")]
PostcopyGiveUpOption = Annotated[
    float,
    typer.Option(
        "--postcopy-give-up",
        metavar="SECONDS",
        min=0.0,
        help="How long a post-copy migration whose link broke may wait for it to come back "
        "before it is given up (the guest is then lost: its memory is split across two hosts).",
    ),
]
DefaultsOption = Annotated[
    DefaultsProfile,
    typer.Option(
        "--defaults",
        help="Whose defaults fill unset settings: 'document' (the OpenShift document) or "
        "'kubevirt' (both: completionTimeoutPerGiB 150, parallelOutboundMigrationsPerNode 2), "
        "or 'hco-1.20' (the HyperConverged operator since release 1.20: 20 and 1). Pick the "
        "release your cluster runs to see what it would do.",
        case_sensitive=False,
    ),
]


def run_async(coro: Awaitable[T]) -> T:
    """Run a command's coroutine; livemig errors become one clear line and exit status 1."""
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except LoadError as exc:
        for p in exc.problems:
            err.print(f"error: {p}", markup=False)
        raise typer.Exit(1) from exc
    except (LivemigError, FileNotFoundError) as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from exc
    except httpx.TransportError as exc:
        url = exc.request.url.copy_with(path="/", query=None) if _has_request(exc) else "?"
        if isinstance(exc, httpx.ConnectError):
            what = f"no livemig server at {url}: is `livemig up` (or `livemig server`) running?"
        else:
            what = f"the livemig server at {url} did not answer in time (it may be overloaded)"
        err.print(f"error: {what} ({type(exc).__name__}: {exc or 'no answer'})", markup=False)
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        raise typer.Exit(130) from None


def _has_request(exc: httpx.TransportError) -> bool:
    try:
        exc.request  # noqa: B018 (raises RuntimeError when the error has no request)
    except RuntimeError:
        return False
    return True


def memory_option(text: str, option: str) -> int:
    """A node's memory from the command line, in bytes, or one line saying what is wrong."""
    try:
        size = parse_quantity(text).to_bytes()
    except QuantityError as exc:
        err.print(f"error: {option}: {exc}", markup=False)
        raise typer.Exit(2) from None
    if not 0 < size <= MAX_MEMORY_BYTES:
        err.print(
            f"error: {option}: {text!r} must be above 0 and at most "
            f"{short_bytes(MAX_MEMORY_BYTES)}",
            markup=False,
        )
        raise typer.Exit(2)
    return size


def require_qemu() -> None:
    """Exit with how to install QEMU if it is missing (before any cluster starts)."""
    from livemig.hypervisor.qemu import QEMU_BINARY, qemu_missing

    problem = qemu_missing(QEMU_BINARY)
    if problem:
        err.print(f"error: {problem}", markup=False)
        raise typer.Exit(1)


def connect(server: str | None, token: str | None, state: Path | None) -> ApiClient:
    if server is None or token is None:
        url, found_token = find_cluster(state)
        server, token = server or url, token or found_token
    return ApiClient(server, token)


def _serve_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    run_async(runner())


def register(app: typer.Typer) -> None:
    @app.command()
    def up(
        nodes: Annotated[int, typer.Option(min=1, help="Node agents to run.")] = 3,
        state: StateOption = None,
        port: Annotated[int, typer.Option(help="API port on 127.0.0.1 (0: any free).")] = 0,
        node_memory: Annotated[str, typer.Option(help="Memory each node offers.")] = "4Gi",
        defaults: DefaultsOption = DefaultsProfile.DOCUMENT,
        postcopy_give_up: PostcopyGiveUpOption = POSTCOPY_GIVE_UP,
    ) -> None:
        """Run a whole cluster in this process: API server, controller and N node agents.

        VMs run as real QEMU processes. The CLI finds this cluster without flags. Ctrl-C stops
        everything, VMs included.
        """
        folder = state or default_state_dir()
        require_qemu()

        async def main(stop: asyncio.Event) -> None:
            cluster = LocalCluster(
                folder,
                nodes,
                port,
                node_memory=memory_option(node_memory, "--node-memory"),
                defaults=defaults,
                postcopy_give_up=postcopy_give_up,
            )
            await cluster.start()
            out.print(
                f"livemig up: {cluster.url} ({nodes} nodes), state in {folder}; "
                f"defaults: {defaults.describe()}"
            )
            out.print(
                "Try: livemig apply -f VM.yaml; livemig get vmis; livemig migrate VMI "
                "--wait. Ctrl-C stops the cluster."
            )
            try:
                await stop.wait()
            finally:
                out.print("stopping: VMs, agents, controller, server")
                await cluster.stop(stop_vms=True)

        _serve_until_signal(main)

    @app.command()
    def server(
        state: StateOption = None,
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port (0: any free).")] = 8443,
        no_controller: Annotated[
            bool, typer.Option("--no-controller", help="Do not run the migration controller here.")
        ] = False,
        defaults: DefaultsOption = DefaultsProfile.DOCUMENT,
    ) -> None:
        """Run the API server (and the controller) over a SQLite store in the state folder."""
        from livemig.controller.controller import Controller
        from livemig.server.run import ensure_token, make_state_dir, start_server
        from livemig.store.sqlite import SQLiteStore

        folder = state or default_state_dir()

        async def main(stop: asyncio.Event) -> None:
            make_state_dir(folder)  # created if missing, as `livemig up` does
            store = SQLiteStore(folder / "livemig.db")
            token = ensure_token(folder)
            running = await start_server(store, token, host, port)
            (folder / "endpoint.json").write_text(json.dumps({"url": running.url}))
            out.print(f"livemig server on {running.url}; token in {folder / 'token'}")
            tasks = []
            client = ApiClient(running.url, token)
            if not no_controller:
                controller = Controller(client, RealClock(), defaults=defaults)
                tasks.append(asyncio.create_task(controller.run()))
            try:
                await stop.wait()
            finally:
                for t in tasks:
                    await cancel_and_wait(t)
                await client.close()
                await running.stop()
                store.close()

        _serve_until_signal(main)

    @app.command()
    def controller(
        server: ServerOption = None,
        token: TokenOption = None,
        state: StateOption = None,
        defaults: DefaultsOption = DefaultsProfile.DOCUMENT,
    ) -> None:
        """Run the migration controller against an API server."""
        from livemig.controller.controller import Controller

        async def main(stop: asyncio.Event) -> None:
            async with connect(server, token, state) as client:
                task = asyncio.create_task(Controller(client, RealClock(), defaults=defaults).run())
                await stop.wait()
                await cancel_and_wait(task)

        _serve_until_signal(main)

    @app.command()
    def agent(
        node: Annotated[str, typer.Option("--node", help="This node's name.")],
        server: ServerOption = None,
        token: TokenOption = None,
        state: StateOption = None,
        memory: Annotated[str, typer.Option(help="Memory this node offers to VMs.")] = "8Gi",
        address: Annotated[
            str,
            typer.Option(
                help="Address incoming migrations connect to (the migration network's, if any)."
            ),
        ] = "127.0.0.1",
        disk_root: Annotated[
            Path | None,
            typer.Option(
                "--disk-root",
                metavar="DIR",
                help="The only folder hostDisk images may come from (default: STATE/disks).",
            ),
        ] = None,
        postcopy_give_up: PostcopyGiveUpOption = POSTCOPY_GIVE_UP,
    ) -> None:
        """Run a node agent: this node's VMs as QEMU processes, and their migrations.

        Stopping the agent leaves its VMs running; a new agent re-adopts them. A hostDisk path
        outside --disk-root (after resolving symlinks and ..) or not a regular file is refused,
        with a condition on the VMI naming the path and the root.
        """
        from livemig.agent.agent import NodeAgent

        require_qemu()
        folder = (state or default_state_dir()) / "nodes" / node

        async def main(stop: asyncio.Event) -> None:
            async with connect(server, token, state) as client:
                the_agent = NodeAgent(
                    client,
                    node,
                    folder,
                    RealClock(),
                    memory_capacity=memory_option(memory, "--memory"),
                    address=address,
                    disk_root=disk_root or (state or default_state_dir()) / "disks",
                    postcopy_give_up=postcopy_give_up,
                )
                task = asyncio.create_task(the_agent.run())
                await stop.wait()
                await cancel_and_wait(task)
                await the_agent.shutdown(stop_vms=False)

        _serve_until_signal(main)

    @app.command()
    def apply(
        files: Annotated[
            list[str],
            typer.Option(
                "-f", "--filename", metavar="PATH", help="File, folder or - (repeatable)."
            ),
        ],
        server: ServerOption = None,
        token: TokenOption = None,
        state: StateOption = None,
    ) -> None:
        """Create or update objects, as `kubectl apply` does.

        Everything is validated first: one bad object and nothing is sent. An existing object
        is merged, not replaced: what you set is set, what you applied last time and dropped
        now is removed (so removing a setting restores its default), and everything else on it
        stays — labels others added, and its status (an applied `oc get -o yaml` dump never
        moves a VM). Prints created, configured or unchanged per object.
        """
        loaded = load_files(files, "applied")
        objects = [(item.obj.ref, to_dict(item.obj)) for item in loaded.objects]
        too_big = [
            f"error: {ref}: the object is {short_bytes(size)}; the API takes at most "
            f"{short_bytes(MAX_BODY_BYTES)} per object"
            for ref, obj in objects
            if (size := len(json.dumps(obj))) > MAX_BODY_BYTES
        ]
        if too_big:
            for line in too_big:
                err.print(line, markup=False)
            err.print("nothing was applied.", markup=False)
            raise typer.Exit(1)

        async def main() -> None:
            async with connect(server, token, state) as client:
                for ref, obj in objects:
                    verb = await apply_one(client, obj)
                    out.print(f"{ref} {verb.value}", markup=False)

        run_async(main())

    @app.command()
    def get(
        kind: Annotated[
            str, typer.Argument(help="vms, vmis, migrations, policies, nodes, events, …")
        ],
        name: Annotated[str | None, typer.Argument(help="One object.")] = None,
        namespace: NamespaceOption = None,
        output: Annotated[
            str, typer.Option("-o", "--output", help="table, wide, yaml or json.")
        ] = "table",
        watch: Annotated[
            bool, typer.Option("-w", "--watch", help="Keep printing changes.")
        ] = False,
        server: ServerOption = None,
        token: TokenOption = None,
        state: StateOption = None,
    ) -> None:
        """List objects (or show one)."""
        cls = _kind_or_exit(kind)

        async def main() -> None:
            async with connect(server, token, state) as client:
                if name:
                    items = [await client.get(cls.KIND, name, namespace)]
                    rev = 0
                else:
                    items, rev = await client.list(cls.KIND, namespace)
                context = await _node_counts(client) if cls.KIND == "Node" else {}
                _print_objects(cls.KIND, items, output, context=context)
                if watch:
                    async for event in client.watch(cls.KIND, rev, namespace):
                        if name and event.object["metadata"]["name"] != name:
                            continue
                        if cls.KIND == "Node":
                            context = await _node_counts(client)
                        _print_objects(
                            cls.KIND, [event.object], output, header=False, context=context
                        )

        run_async(main())

    @app.command()
    def describe(
        kind: str,
        name: str,
        namespace: NamespaceOption = None,
        server: ServerOption = None,
        token: TokenOption = None,
        state: StateOption = None,
    ) -> None:
        """Show one object in full: spec, status, conditions and migration state."""
        cls = _kind_or_exit(kind)

        async def main() -> None:
            async with connect(server, token, state) as client:
                obj = await client.get(cls.KIND, name, namespace)
                sys.stdout.write(yaml.safe_dump(obj, sort_keys=False))

        run_async(main())

    @app.command()
    def delete(
        kind: str,
        name: str,
        namespace: NamespaceOption = None,
        server: ServerOption = None,
        token: TokenOption = None,
        state: StateOption = None,
    ) -> None:
        """Delete an object (deleting an unfinished migration cancels it)."""
        cls = _kind_or_exit(kind)

        async def main() -> None:
            async with connect(server, token, state) as client:
                await client.delete(cls.KIND, name, namespace)
                out.print(f"{cls.KIND}/{name} deleted")

        run_async(main())

    @app.command()
    def migrate(
        vmi: Annotated[str, typer.Argument(help="The VMI to move.")],
        namespace: NamespaceOption = None,
        wait: Annotated[
            bool, typer.Option("--wait", help="Follow it with a progress bar.")
        ] = False,
        server: ServerOption = None,
        token: TokenOption = None,
        state: StateOption = None,
    ) -> None:
        """Live-migrate a VMI (creates a VirtualMachineInstanceMigration)."""
        from livemig.api.builders import migration_request

        ns = namespace or "default"

        async def main() -> dict[str, Any]:
            async with connect(server, token, state) as client:
                await client.get("VirtualMachineInstance", vmi, ns)  # a clear NotFound
                name = f"{vmi}-migration-{secrets.token_hex(3)}"
                await client.create(migration_request(name, vmi, ns, priority="user-triggered"))
                out.print(f"VirtualMachineInstanceMigration/{ns}/{name} created")
                if not wait:
                    return {}
                return await follow(client, ns, [name])

        result = run_async(main())
        if wait and any(not MigrationStatus.of(m).succeeded for m in result.values()):
            raise typer.Exit(1)

    @app.command(name="migrate-cancel")
    def migrate_cancel(
        vmi: str,
        namespace: NamespaceOption = None,
        server: ServerOption = None,
        token: TokenOption = None,
        state: StateOption = None,
    ) -> None:
        """Cancel a VMI's unfinished migration; the VM keeps running on its source."""
        ns = namespace or "default"

        async def main() -> None:
            async with connect(server, token, state) as client:
                items, _ = await client.list("VirtualMachineInstanceMigration", ns)
                live = [
                    m
                    for m in items
                    if m["spec"]["vmiName"] == vmi and MigrationStatus.of(m).is_active
                ]
                if not live:
                    raise NotFound(f"VirtualMachineInstance {ns}/{vmi} has no unfinished migration")
                await client.delete(
                    "VirtualMachineInstanceMigration", live[0]["metadata"]["name"], ns
                )
                out.print(f"migration {live[0]['metadata']['name']} cancelled")

        run_async(main())


async def _node_counts(client: ApiClient) -> dict[str, dict[str, int]]:
    """VMIs on each node and migrations leaving it, for ``get nodes``."""
    vmis, _ = await client.list("VirtualMachineInstance")
    migrations, _ = await client.list("VirtualMachineInstanceMigration")
    vms: dict[str, int] = {}
    for v in vmis:
        st = VMIStatus.of(v)
        if st.node and not st.finished:
            vms[st.node] = vms.get(st.node, 0) + 1
    moving: dict[str, int] = {}
    for m in migrations:
        ms = MigrationStatus.of(m)
        if ms.holds_slot and ms.source_node:
            moving[ms.source_node] = moving.get(ms.source_node, 0) + 1
    return {"vms": vms, "migrating": moving}


def _kind_or_exit(kind: str) -> type[Resource]:
    cls = resolve_kind(kind)
    if cls is None:
        err.print(f"error: unknown kind {kind!r} (try vms, vmis, migrations, policies, nodes)")
        raise typer.Exit(1)
    return cls


async def apply_one(client: ApiClient, obj: dict[str, Any]) -> Verb:
    """Create ``obj`` or three-way merge it onto the stored one (livemig.api.apply)."""
    meta = obj["metadata"]
    try:
        await client.create(to_create(obj))
        return Verb.CREATED
    except AlreadyExists:
        pass
    verb = Verb.UNCHANGED

    def merge(current: dict[str, Any]) -> dict[str, Any] | None:
        nonlocal verb
        merged, verb = to_update(current, obj)
        return None if verb is Verb.UNCHANGED else merged

    await client.modify(obj["kind"], meta["name"], meta.get("namespace"), merge)
    return verb


def load_files(files: list[str], done: str = "loaded") -> LoadResult:
    """Load every file, or print each problem on a line of its own and exit 1."""
    try:
        return load_paths(files)
    except LoadError as exc:
        for problem in exc.problems:
            err.print(f"error: {problem}", markup=False)
        n = len(exc.problems)
        err.print(f"{n} problem{'s' if n != 1 else ''} found; nothing was {done}.", markup=False)
        raise typer.Exit(1) from exc


# --- printing -------------------------------------------------------------------------------


def _trouble(status: dict[str, Any]) -> str:
    """The reason of a condition that says something is wrong (``describe`` has the message)."""
    for c in status.get("conditions") or []:
        if c.get("type") in ("Scheduled", "Synchronized") and c.get("status") == "False":
            return str(c.get("reason") or "")
    return ""


def _age(obj: dict[str, Any]) -> str:
    return str(obj["metadata"].get("creationTimestamp", ""))[:19]


def _columns(
    kind: str, obj: dict[str, Any], wide: bool, context: dict[str, dict[str, int]]
) -> list[str]:
    meta, status = obj["metadata"], obj.get("status") or {}
    if kind == "VirtualMachineInstanceMigration":
        m = MigrationStatus.of(obj)
        cols = [
            meta["namespace"],
            meta["name"],
            obj["spec"]["vmiName"],
            m.phase.value or "Pending",
            m.source_node or "",
            m.target_node or "",
            m.mode.value if m.mode else "",
            m.policy or "",
        ]
        if wide:
            cols += [m.reason or ""]
        return cols
    if kind == "VirtualMachineInstance":
        vmi = VMIStatus.of(obj)
        return [
            meta["namespace"],
            meta["name"],
            vmi.phase.value or "Pending",
            vmi.node or "",
            _trouble(status),
        ]
    if kind == "VirtualMachine":
        return [
            meta["namespace"],
            meta["name"],
            obj["spec"].get("runStrategy") or str(obj["spec"].get("running")),
        ]
    if kind == "Node":
        ready = next(
            (c["status"] for c in status.get("conditions", []) if c["type"] == "Ready"), "Unknown"
        )
        words = ["Ready" if ready == "True" else "NotReady"]
        if (obj.get("spec") or {}).get("unschedulable"):
            words.append("SchedulingDisabled")
        drain = status.get("drain") or {}
        if drain and not drain.get("completionTimestamp"):
            words.append("Draining")
        mem = (status.get("capacity") or {}).get("memoryBytes", 0)
        cols = [
            meta["name"],
            ",".join(words),
            str(context.get("vms", {}).get(meta["name"], 0)),
            str(context.get("migrating", {}).get(meta["name"], 0)),
            human_bytes(mem),
        ]
        if wide:
            cols.append(
                f"{drain.get('vmsLeft', 0)} left, {drain.get('inFlight', 0)} migrating, "
                f"{drain.get('queued', 0)} queued, {len(drain.get('blocked') or [])} blocked"
                if drain and not drain.get("completionTimestamp")
                else ("drained" if drain else "")
            )
        return cols
    if kind == "Event":
        involved = obj.get("involvedObject") or {}
        return [
            str(obj.get("lastTimestamp") or "")[:19],
            str(obj.get("type") or ""),
            str(obj.get("reason") or ""),
            f"{involved.get('kind', '')}/{involved.get('name', '')}",
            str(obj.get("count") or 1),
            str(obj.get("message") or ""),
        ]
    return [meta.get("namespace") or "", meta["name"], _age(obj)]


_HEADERS = {
    "VirtualMachineInstanceMigration": [
        "NAMESPACE",
        "NAME",
        "VMI",
        "PHASE",
        "SOURCE",
        "TARGET",
        "MODE",
        "POLICY",
    ],
    "VirtualMachineInstance": ["NAMESPACE", "NAME", "PHASE", "NODE", "PROBLEM"],
    "VirtualMachine": ["NAMESPACE", "NAME", "RUN"],
    "Node": ["NAME", "STATUS", "VMS", "MIGRATING", "MEMORY"],
    "Event": ["LAST SEEN", "TYPE", "REASON", "OBJECT", "COUNT", "MESSAGE"],
}


def _print_objects(
    kind: str,
    items: list[dict[str, Any]],
    output: str,
    header: bool = True,
    context: dict[str, dict[str, int]] | None = None,
) -> None:
    if output in ("yaml", "json"):
        data: Any = (
            items[0] if len(items) == 1 else {"apiVersion": "v1", "kind": "List", "items": items}
        )
        text = (
            json.dumps(data, indent=2) + "\n"
            if output == "json"
            else yaml.safe_dump(data, sort_keys=False)
        )
        sys.stdout.write(text)
        return
    wide = output == "wide"
    headers = list(_HEADERS.get(kind, ["NAMESPACE", "NAME", "CREATED"]))
    if wide and kind == "VirtualMachineInstanceMigration":
        headers.append("REASON")
    if wide and kind == "Node":
        headers.append("DRAIN")
    table = Table(box=None, show_header=header, pad_edge=False, padding=(0, 2))
    for h in headers:
        table.add_column(h)
    if kind == "Event":
        items = sorted(items, key=lambda e: str(e.get("lastTimestamp") or ""))
    for obj in items:
        table.add_row(*_columns(kind, obj, wide, context or {}))
    out.print(table)


# --- following migrations ---------------------------------------------------------------


async def follow(client: ApiClient, namespace: str, names: list[str]) -> dict[str, Any]:
    """Live progress bars until every named migration has finished; their last states."""
    done: dict[str, Any] = {}
    with Progress(
        TextColumn("{task.fields[vm]:<16}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[detail]}"),
        console=out,
        transient=False,
    ) as progress:
        bars = {n: progress.add_task(n, total=100, vm=n, detail="Pending") for n in names}
        while len(done) < len(names):
            for n in names:
                if n in done:
                    continue
                try:
                    m = await client.get("VirtualMachineInstanceMigration", n, namespace)
                except NotFound:
                    done[n] = {"metadata": {"name": n}, "status": {}}  # deleted: cancelled
                    progress.update(bars[n], detail="deleted (cancelled)")
                    continue
                except httpx.TimeoutException:
                    continue  # a slow answer is not the end of the migration: ask again
                st = MigrationStatus.of(m)
                figures = st.figures or Figures()
                pct = (
                    100.0
                    if st.succeeded
                    else (100 * (figures.total - figures.remaining) / figures.total)
                    if figures.total
                    else 0
                )
                detail = (
                    f"{st.phase.value or 'Pending'} {st.mode.value if st.mode else ''} "
                    f"{human_bytes(figures.transfer_rate)}/s left {human_bytes(figures.remaining)} "
                    f"policy {st.policy or '-'}"
                )
                if st.phase is Phase.FAILED:
                    detail += f" — {st.reason}"
                progress.update(bars[n], completed=pct, vm=m["spec"]["vmiName"], detail=detail)
                if st.finished:
                    done[n] = m
            await RealClock().sleep(0.5)
    return done


def configure_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)
    # Components say once that they are up (livemig.informer.LIFECYCLE).
    logging.getLogger("livemig.lifecycle").setLevel(logging.INFO)
