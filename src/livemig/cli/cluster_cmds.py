"""The cluster commands: up, server, controller, agent, apply, get, describe, delete, migrate,
migrate-cancel."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from livemig.api.apply import Verb, to_create, to_update
from livemig.api.lifecycle import Figures, MigrationStatus, Phase
from livemig.api.limits import MAX_BODY_BYTES, MAX_MEMORY_BYTES
from livemig.api.loading import LoadResult, load_paths
from livemig.api.models import KINDS, to_dict
from livemig.api.quantity import human_bytes, parse_quantity, short_bytes
from livemig.api.vmi_status import VMIStatus
from livemig.cli.completion import complete_kind_or_name, complete_names
from livemig.cli.describing import describe_text
from livemig.cli.getting import Context, Printer, Target, find, object_name, targets
from livemig.client import ApiClient
from livemig.clock import RealClock
from livemig.cluster import LocalCluster, default_state_dir, find_cluster
from livemig.errors import (
    AlreadyExists,
    LivemigError,
    LoadError,
    NotFound,
    QuantityError,
    UsageError,
)
from livemig.migration import POSTCOPY_GIVE_UP
from livemig.policy import DefaultsProfile
from livemig.tasks import cancel_and_wait

T = TypeVar("T")
#: The label every node carries with its own name (as kubelet sets it).
HOSTNAME_LABEL = "kubernetes.io/hostname"
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
NamespaceOption = Annotated[
    str | None,
    typer.Option(
        "-n",
        "--namespace",
        metavar="NS",
        help="The namespace (listings default to 'default').",
        autocompletion=lambda: complete_names("Namespace", ""),
    ),
]
AllNamespacesOption = Annotated[
    bool, typer.Option("-A", "--all-namespaces", help="Every namespace.")
]
SelectorOption = Annotated[
    str | None,
    typer.Option(
        "-l",
        "--selector",
        metavar="SELECTOR",
        help="Label selector: app=web, tier!=db, 'tier in (web,db)', 'tier notin (x)', key, !key.",
    ),
]
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


def parse_networks(given: list[str]) -> dict[str, str]:
    """``--network NAME=ADDRESS`` options as a map; a bad one exits with why."""
    out: dict[str, str] = {}
    for item in given:
        name, sep, address = item.partition("=")
        try:
            ipaddress.ip_address(address)
        except ValueError:
            address = ""
        if not sep or not name or not address:
            err.print(
                f"error: --network {item!r}: give NAME=ADDRESS, like migration-network=198.19.0.11",
                markup=False,
            )
            raise typer.Exit(2)
        if name in out:
            err.print(f"error: --network {name} is given twice", markup=False)
            raise typer.Exit(2)
        out[name] = address
    return out


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
        isolate: Annotated[
            bool,
            typer.Option(
                "--isolate",
                help="Separate hosts (root only): each node's agent and QEMUs in their own "
                "network namespace, joined by a primary network (198.18.K.0/24, API and VM "
                "traffic) and a migration network (198.19.K.0/24). Set the cluster's "
                "liveMigrationConfig.network to the migration network's name to use it.",
            ),
        ] = False,
        migration_network: Annotated[
            str,
            typer.Option(
                "--migration-network",
                metavar="NAME",
                help="With --isolate: the migration network's name (what "
                "liveMigrationConfig.network names).",
            ),
        ] = "migration-network",
        primary_rate: Annotated[
            str | None,
            typer.Option(
                "--primary-rate",
                metavar="RATE",
                help="With --isolate: shape each node's primary link (tc rate: 200mbit, 1gbit).",
            ),
        ] = None,
        migration_rate: Annotated[
            str | None,
            typer.Option(
                "--migration-rate",
                metavar="RATE",
                help="With --isolate: shape each node's migration link (tc rate).",
            ),
        ] = None,
    ) -> None:
        """Run a whole cluster: API server, controller and N node agents.

        VMs run as real QEMU processes. The CLI finds this cluster without flags. Ctrl-C stops
        everything, VMs included. Without --isolate every node shares this machine's network
        (127.0.0.1) and the agents run in this process.
        """
        folder = state or default_state_dir()
        require_qemu()
        if not isolate and (primary_rate or migration_rate):
            err.print("error: --primary-rate and --migration-rate need --isolate", markup=False)
            raise typer.Exit(2)
        if isolate and os.geteuid() != 0:
            err.print(
                "error: --isolate needs root (it makes network namespaces, bridges and links); "
                "run without it to share 127.0.0.1",
                markup=False,
            )
            raise typer.Exit(2)

        async def main(stop: asyncio.Event) -> None:
            cluster = LocalCluster(
                folder,
                nodes,
                port,
                node_memory=memory_option(node_memory, "--node-memory"),
                defaults=defaults,
                postcopy_give_up=postcopy_give_up,
                isolate=isolate,
                migration_network=migration_network,
                primary_rate=primary_rate,
                migration_rate=migration_rate,
            )
            try:
                await cluster.start()
            except BaseException:
                await cluster.stop(stop_vms=True)  # nothing half-made is left behind
                raise
            out.print(
                f"livemig up: {cluster.url} ({nodes} nodes), state in {folder}; "
                f"defaults: {defaults.describe()}"
            )
            if cluster.layout is not None:
                for n in cluster.layout.nodes:
                    out.print(
                        f"  {n.name}: namespace {n.netns}, primary {n.primary_address}, "
                        f"{cluster.layout.migration_network} {n.migration_address}",
                        markup=False,
                    )
            out.print(
                f"Web console: {cluster.url}/ (log in with the token in {folder / 'token'})",
                markup=False,
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
            running = await start_server(store, token, host, port, defaults=defaults)
            (folder / "endpoint.json").write_text(json.dumps({"url": running.url}))
            out.print(
                f"livemig server on {running.url} (web console at {running.url}/); "
                f"token in {folder / 'token'}",
                markup=False,
            )
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
                help="This node's address on the primary network: incoming migrations listen "
                "here unless the cluster names a dedicated migration network."
            ),
        ] = "127.0.0.1",
        network: Annotated[
            list[str] | None,
            typer.Option(
                "--network",
                metavar="NAME=ADDRESS",
                help="This node's address on a named network (repeatable). When the cluster's "
                "liveMigrationConfig.network names it, incoming migrations listen there; a node "
                "without it cannot be a migration target.",
            ),
        ] = None,
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
        networks = parse_networks(network or [])

        async def main(stop: asyncio.Event) -> None:
            async with connect(server, token, state) as client:
                the_agent = NodeAgent(
                    client,
                    node,
                    folder,
                    RealClock(),
                    memory_capacity=memory_option(memory, "--memory"),
                    address=address,
                    networks=networks,
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
        what: Annotated[
            list[str],
            typer.Argument(
                help="KIND [NAME…] or KIND/NAME…; KIND: vm, vmi, vmim (migrations), mp "
                "(policies), hco, node, ns, event, … (short, plural or full names).",
                autocompletion=complete_kind_or_name,
                show_default=False,
            ),
        ],
        namespace: NamespaceOption = None,
        all_namespaces: AllNamespacesOption = False,
        selector: SelectorOption = None,
        output: Annotated[
            str,
            typer.Option(
                "-o",
                "--output",
                help="table, wide (more columns), yaml, json, name, or jsonpath=TEMPLATE "
                "(kubectl's: '{.items[*].metadata.name}', '{range .items[*]}…{end}').",
            ),
        ] = "table",
        watch: Annotated[
            bool, typer.Option("-w", "--watch", help="After listing, print every change.")
        ] = False,
        server: ServerOption = None,
        token: TokenOption = None,
        state: StateOption = None,
    ) -> None:
        """List objects, or show the ones named.

        Without -n, a listing shows namespace default; a NAME is looked up in every namespace
        (the only match is used; several are an error that names them). -A lists every
        namespace."""

        async def main() -> None:
            target = targets(what)
            printer = Printer(target.cls, output, all_namespaces, watching=watch)
            async with connect(server, token, state) as client:
                items, rev, where = await find(client, target, namespace, all_namespaces, selector)
                wide = output == "wide"
                ctx = await Context.load(client, target.cls.KIND, wide)
                printer.listing(items, ctx, one=len(target.names) == 1, namespace=where)
                if not watch:
                    return
                names = set(target.names)
                async for event in client.watch(target.cls.KIND, rev, where, selector):
                    if names and event.object["metadata"]["name"] not in names:
                        continue
                    if target.cls.KIND in ("Node", "VirtualMachine", "VirtualMachineInstance"):
                        ctx = await Context.load(client, target.cls.KIND, wide)
                    printer.change(event.object, ctx, deleted=event.type == "DELETED")

        run_async(main())

    @app.command()
    def describe(
        what: Annotated[
            list[str],
            typer.Argument(help="KIND NAME… or KIND/NAME…", autocompletion=complete_kind_or_name),
        ],
        namespace: NamespaceOption = None,
        selector: SelectorOption = None,
        server: ServerOption = None,
        token: TokenOption = None,
        state: StateOption = None,
    ) -> None:
        """Show objects as a readable summary (sizes in Mi/Gi, times as ages, a migration's
        figures and phases, a node's drain), each ending with its events."""

        async def main() -> None:
            target = targets(what)
            async with connect(server, token, state) as client:
                items, _, where = await find(client, target, namespace, False, selector)
                if not items:
                    where_ = f" in {where} namespace" if where else ""
                    err.print(f"No resources found{where_}.", markup=False)
                for i, obj in enumerate(items):
                    if i:
                        sys.stdout.write("\n\n")
                    sys.stdout.write(await describe_text(client, obj))

        run_async(main())

    @app.command()
    def delete(
        what: Annotated[
            list[str],
            typer.Argument(
                help="KIND NAME…, KIND/NAME…, or KIND with -l SELECTOR",
                autocompletion=complete_kind_or_name,
            ),
        ],
        namespace: NamespaceOption = None,
        all_namespaces: AllNamespacesOption = False,
        selector: SelectorOption = None,
        server: ServerOption = None,
        token: TokenOption = None,
        state: StateOption = None,
    ) -> None:
        """Delete objects (deleting an unfinished migration cancels it; deleting a VM deletes
        its VMI). A NAME without -n is looked up in every namespace."""

        async def main() -> None:
            target = targets(what)
            if not target.names and not selector:
                raise UsageError(
                    f"name what to delete: livemig delete {what[0]} NAME, or select with -l"
                )
            async with connect(server, token, state) as client:
                items, _, where = await find(client, target, namespace, all_namespaces, selector)
                if not items:
                    where_ = f" in {where} namespace" if where else ""
                    err.print(f"No resources found{where_}.", markup=False)
                for obj in items:
                    meta = obj["metadata"]
                    await client.delete(target.cls.KIND, meta["name"], meta.get("namespace"))
                    place = f" (namespace {meta['namespace']})" if meta.get("namespace") else ""
                    out.print(f"{object_name(obj)} deleted{place}", markup=False)

        run_async(main())

    @app.command()
    def migrate(
        vmi: Annotated[str, typer.Argument(help="The VMI to move.")],
        namespace: NamespaceOption = None,
        wait: Annotated[
            bool,
            typer.Option(
                "--wait",
                help="Follow it with a progress bar, and say when and why it switches to "
                "post-copy or pauses the guest.",
            ),
        ] = False,
        target_node: Annotated[
            str | None,
            typer.Option(
                "--target-node",
                metavar="NODE",
                help="Move it to this node (an addedNodeSelector on kubernetes.io/hostname, "
                "like `virtctl migrate --addedNodeSelector`); the VM's own nodeSelector "
                "still applies.",
                autocompletion=lambda incomplete: complete_names("Node", incomplete),
            ),
        ] = None,
        server: ServerOption = None,
        token: TokenOption = None,
        state: StateOption = None,
    ) -> None:
        """Live-migrate a VMI (creates a VirtualMachineInstanceMigration)."""
        from livemig.api.builders import migration_request

        async def main() -> dict[str, Any]:
            async with connect(server, token, state) as client:
                found, _, _ = await find(
                    client, Target(KINDS["VirtualMachineInstance"], (vmi,)), namespace, False, None
                )
                ns = found[0]["metadata"]["namespace"]
                if target_node is not None:
                    await client.get("Node", target_node)  # a clear NotFound
                    if VMIStatus.of(found[0]).node == target_node:
                        raise UsageError(
                            f"VirtualMachineInstance {ns}/{vmi} already runs on {target_node}"
                        )
                name = f"{vmi}-migration-{secrets.token_hex(3)}"
                request = migration_request(name, vmi, ns, priority="user-triggered")
                if target_node is not None:
                    request["spec"]["addedNodeSelector"] = {HOSTNAME_LABEL: target_node}
                await client.create(request)
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
        """Cancel a VMI's unfinished migration; the VM keeps running on its source. Without -n
        the VMI is looked up in every namespace."""

        async def main() -> None:
            async with connect(server, token, state) as client:
                found, _, _ = await find(
                    client, Target(KINDS["VirtualMachineInstance"], (vmi,)), namespace, False, None
                )
                ns = found[0]["metadata"]["namespace"]
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


# --- following migrations ---------------------------------------------------------------


async def follow(client: ApiClient, namespace: str, names: list[str]) -> dict[str, Any]:
    """Live progress bars until every named migration has finished; their last states."""
    done: dict[str, Any] = {}
    told: set[tuple[str, int]] = set()
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
                if (st.mode is not None and st.mode.value != "PreCopy") or st.finished:
                    for line in await _news(client, namespace, n, told):
                        progress.console.print(line, markup=False)
                if st.finished:
                    done[n] = m
            await RealClock().sleep(0.5)
    return done


#: Events ``migrate --wait`` repeats: when and why the migration changed course.
NEWS = ("SwitchedToPostCopy", "Paused", "PostCopyPaused", "PostCopyResumed")


async def _news(
    client: ApiClient, namespace: str, name: str, told: set[tuple[str, int]]
) -> list[str]:
    """Lines for the migration's course-changing events not printed yet."""
    events, _ = await client.list("Event", namespace)
    lines = []
    for e in sorted(events, key=lambda e: str(e.get("lastTimestamp") or "")):
        involved = e.get("involvedObject") or {}
        if (
            involved.get("kind") != "VirtualMachineInstanceMigration"
            or involved.get("name") != name
        ):
            continue
        key = (str(e["metadata"]["name"]), int(e.get("count") or 1))
        if e.get("reason") in NEWS and key not in told:
            told.add(key)
            when = str(e.get("lastTimestamp") or "")[11:19]
            lines.append(f"{when} {name}: {e.get('reason')}: {e.get('message')}")
    return lines


def configure_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)
    # Components say once that they are up (livemig.informer.LIFECYCLE).
    logging.getLogger("livemig.lifecycle").setLevel(logging.INFO)
