"""A whole livemig cluster in one process (``livemig up``): store, API server, controller and N
node agents. The agents still run real QEMU processes; state lives in one folder."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from livemig import isolation
from livemig.agent.agent import NodeAgent
from livemig.client import ApiClient
from livemig.clock import Clock, RealClock
from livemig.controller.controller import HEARTBEAT_TIMEOUT, Controller
from livemig.evacuation import BACKOFF as EVACUATION_BACKOFF
from livemig.migration import POSTCOPY_GIVE_UP
from livemig.policy import DefaultsProfile
from livemig.server.run import RunningServer, ensure_token, make_state_dir, start_server
from livemig.store.sqlite import SQLiteStore
from livemig.tasks import cancel_and_wait

log = logging.getLogger(__name__)
ENDPOINT_FILE = "endpoint.json"
#: Seconds an isolated agent may take to exit on SIGTERM before it is killed.
AGENT_STOP_TIMEOUT = 10.0


def default_state_dir() -> Path:
    """$LIVEMIG_STATE, else ~/.local/state/livemig — where the CLI looks for a cluster."""
    env = os.environ.get("LIVEMIG_STATE")
    if env:
        return Path(env)
    return Path.home() / ".local" / "state" / "livemig"


def find_cluster(state_dir: Path | None = None) -> tuple[str, str]:
    """(URL, token) of the cluster whose state is in ``state_dir``."""
    folder = state_dir or default_state_dir()
    try:
        endpoint = json.loads((folder / ENDPOINT_FILE).read_text())
        token = (folder / "token").read_text().strip()
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(
            f"no livemig cluster found in {folder} (start one with `livemig up`, or pass "
            "--server and --token)"
        ) from exc
    return str(endpoint["url"]), token


class LocalCluster:
    def __init__(
        self,
        state_dir: Path,
        nodes: int = 3,
        port: int = 0,
        clock: Clock | None = None,
        node_memory: int = 4 * 2**30,
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
        defaults: DefaultsProfile = DefaultsProfile.DOCUMENT,
        postcopy_give_up: float = POSTCOPY_GIVE_UP,
        evacuation_backoff: tuple[float, float] = EVACUATION_BACKOFF,
        isolate: bool = False,
        migration_network: str = isolation.MIGRATION_NETWORK,
        primary_rate: str | None = None,
        migration_rate: str | None = None,
    ) -> None:
        self.defaults = defaults
        #: Separate hosts (network namespaces, agents as their own processes): livemig.isolation.
        self.isolate = isolate
        self.migration_network = migration_network
        self.rates = (
            isolation.check_rate(primary_rate, "--primary-rate"),
            isolation.check_rate(migration_rate, "--migration-rate"),
        )
        self.layout: isolation.Layout | None = None
        self.agent_processes: dict[str, asyncio.subprocess.Process] = {}
        self.evacuation_backoff = evacuation_backoff
        self.postcopy_give_up = postcopy_give_up
        self.state_dir = Path(state_dir)
        self.node_names = [f"node-{i + 1}" for i in range(nodes)]
        self.port = port
        self.clock = clock or RealClock()
        self.node_memory = node_memory
        self.heartbeat_timeout = heartbeat_timeout
        self.store: SQLiteStore | None = None
        self.server: RunningServer | None = None
        self.clients: list[ApiClient] = []
        self.agents: list[NodeAgent] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.controller_task: asyncio.Task[None] | None = None

    @property
    def disk_root(self) -> Path:
        """Where hostDisk images must be (shared by every node, as a real cluster's storage)."""
        return self.state_dir / "disks"

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def client(self) -> ApiClient:
        c = ApiClient(self.url, self.token)
        self.clients.append(c)
        return c

    async def start(self) -> None:
        make_state_dir(self.state_dir)
        self.store = SQLiteStore(self.state_dir / "livemig.db")
        self.token = ensure_token(self.state_dir)
        if self.isolate:
            self.layout = await isolation.create(
                self.state_dir, self.node_names, self.migration_network, *self.rates
            )
        try:
            self.server = await start_server(
                self.store,
                self.token,
                port=self.port,
                clock=self.clock,
                defaults=self.defaults,
                also_on=(self.layout.server_address,) if self.layout else (),
            )
        except BaseException:
            await isolation.destroy(self.state_dir)
            raise
        (self.state_dir / ENDPOINT_FILE).write_text(json.dumps({"url": self.server.url}))
        self.start_controller()
        for name in self.node_names:
            if self.layout is not None:
                await self.start_isolated_agent(name)
            else:
                self.start_agent(name)

    def start_controller(self) -> None:
        controller = Controller(
            self.client(),
            self.clock,
            heartbeat_timeout=self.heartbeat_timeout,
            defaults=self.defaults,
            evacuation_backoff=self.evacuation_backoff,
        )
        self.controller_task = asyncio.create_task(controller.run())

    async def stop_controller(self) -> None:
        if self.controller_task is not None:
            await cancel_and_wait(self.controller_task)
            self.controller_task = None

    def start_agent(self, name: str) -> NodeAgent:
        agent = NodeAgent(
            self.client(),
            name,
            self.state_dir / "nodes" / name,
            self.clock,
            memory_capacity=self.node_memory,
            disk_root=self.disk_root,
            postcopy_give_up=self.postcopy_give_up,
        )
        self.agents.append(agent)
        self.tasks.append(asyncio.create_task(agent.run(), name=f"agent-{name}"))
        return agent

    async def start_isolated_agent(self, name: str) -> None:
        """``livemig agent`` as its own process inside the node's network namespace, so that
        it and its QEMUs see only that node's links."""
        assert self.layout is not None and self.server is not None
        node = self.layout.node(name)
        port = self.server.url.rsplit(":", 1)[1]
        folder = self.state_dir / "nodes" / name
        folder.mkdir(parents=True, exist_ok=True)
        log_file = (folder / "agent.log").open("ab")
        try:
            self.agent_processes[name] = await asyncio.create_subprocess_exec(
                "ip",
                "netns",
                "exec",
                node.netns,
                str(Path(sys.executable).parent / "livemig"),
                "agent",
                "--node",
                name,
                "--state",
                str(self.state_dir),
                "--server",
                f"http://{self.layout.server_address}:{port}",
                "--address",
                node.primary_address,
                "--network",
                f"{self.layout.migration_network}={node.migration_address}",
                "--memory",
                str(self.node_memory),
                "--postcopy-give-up",
                str(self.postcopy_give_up),
                env={**os.environ, "LIVEMIG_TOKEN": self.token},
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        finally:
            log_file.close()

    async def _stop_isolated(self) -> None:
        """Stop the agents (SIGTERM, as an operator would), then every QEMU left in the
        namespaces — an isolated cluster is torn down whole — then the namespaces."""
        if self.layout is None:
            return
        for proc in self.agent_processes.values():
            if proc.returncode is None:
                proc.terminate()
        for proc in self.agent_processes.values():
            try:
                await asyncio.wait_for(proc.wait(), AGENT_STOP_TIMEOUT)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        self.agent_processes.clear()
        for node in self.layout.nodes:
            for pid in await isolation.pids(node.netns):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for _ in range(100):
                if not await isolation.pids(node.netns):
                    break
                await self.clock.sleep(0.05)
        await isolation.destroy(self.state_dir)
        self.layout = None

    async def stop_agent(self, agent: NodeAgent, stop_vms: bool) -> None:
        index = self.agents.index(agent)
        task = self.tasks.pop(index)
        self.agents.pop(index)
        await cancel_and_wait(task)
        await agent.shutdown(stop_vms)

    async def stop(self, stop_vms: bool = True) -> None:
        """Stop everything; with ``stop_vms`` no QEMU is left running."""
        await self.stop_controller()
        for agent in list(self.agents):
            await self.stop_agent(agent, stop_vms)
        await self._stop_isolated()
        for c in self.clients:
            await c.close()
        if self.server is not None:
            await self.server.stop()
        if self.store is not None:
            self.store.close()
        with contextlib.suppress(OSError):
            (self.state_dir / ENDPOINT_FILE).unlink()
