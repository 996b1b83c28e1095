"""Separate hosts on one machine (``livemig up --isolate``, root only): each node gets its own
network namespace, joined to two bridges in the host namespace —

- the *primary* network (API and VM traffic): bridge ``lmbp<id>`` with 198.18.K.0/24; the host
  side has 198.18.K.1, where the API server also listens; node *i* is 198.18.K.(10+i);
- the *migration* network (the document's dedicated migration network, named
  ``migration-network`` unless told otherwise): bridge ``lmbm<id>`` with 198.19.K.0/24 and no
  host address; node *i* is 198.19.K.(10+i).

The addresses are in 198.18.0.0/15, the range RFC 2544 sets aside for benchmarks; the
namespaces have no default route, so nothing leaves the machine. Each link can be shaped with
``tc`` (a token bucket on both ends), so that the primary network is visibly slower. The
host-side end of each node's link is where its traffic is counted (``counters``).

Everything made is written to ``isolation.json`` in the state folder first, so a cluster that
died is cleaned up by the next start (or ``destroy``)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from livemig.errors import LivemigError

log = logging.getLogger(__name__)

RECORD = "isolation.json"
PRIMARY = "primary"
MIGRATION_NETWORK = "migration-network"
_RATE = re.compile(r"^\d+(\.\d+)?(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)$")


class IsolationError(LivemigError):
    """The namespaces or links could not be made (not root, no ``ip``, …)."""


@dataclass(frozen=True, slots=True)
class IsolatedNode:
    name: str
    netns: str
    primary_address: str
    migration_address: str
    primary_link: str  # host-side end of the node's primary link
    migration_link: str  # host-side end of the node's migration link


@dataclass(frozen=True, slots=True)
class Layout:
    tag: str
    subnet: int  # K in 198.18.K.0/24 and 198.19.K.0/24
    primary_bridge: str
    migration_bridge: str
    migration_network: str
    nodes: tuple[IsolatedNode, ...]

    @property
    def server_address(self) -> str:
        return f"198.18.{self.subnet}.1"

    def node(self, name: str) -> IsolatedNode:
        return next(n for n in self.nodes if n.name == name)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Layout:
        data = json.loads(text)
        data["nodes"] = tuple(IsolatedNode(**n) for n in data["nodes"])
        return cls(**data)


def check_rate(rate: str | None, option: str) -> str | None:
    """A tc rate (``400mbit``, ``50mbps``) or None; an error that says the form otherwise."""
    if rate is not None and not _RATE.match(rate):
        raise IsolationError(f"{option} {rate!r}: give a tc rate such as 200mbit or 1gbit")
    return rate


async def _ip(*args: str, check: bool = True) -> str:
    """Run ``ip``/``tc`` (args[0]); IsolationError with its own words when it fails."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except FileNotFoundError as exc:
        raise IsolationError(
            f"{args[0]} is not installed: install iproute2 (scripts/setup does)"
        ) from exc
    out, err = await proc.communicate()
    if check and proc.returncode:
        raise IsolationError(f"{' '.join(args)}: {err.decode().strip() or proc.returncode}")
    return out.decode()


async def _free_subnet(start: int) -> int:
    used = await _ip("ip", "-4", "-o", "addr", "show")
    for offset in range(250):
        k = (start + offset) % 250 + 1
        if f" 198.18.{k}." not in used and f" 198.19.{k}." not in used:
            return k
    raise IsolationError("no free /24 left in 198.18.0.0/15 for an isolated cluster")


async def create(
    state_dir: Path,
    nodes: list[str],
    migration_network: str = MIGRATION_NETWORK,
    primary_rate: str | None = None,
    migration_rate: str | None = None,
) -> Layout:
    """Make the namespaces, bridges and links for ``nodes``; on failure, undo what was made."""
    await destroy(state_dir)  # what a cluster that died left behind
    tag = secrets.token_hex(2)
    subnet = await _free_subnet(int(tag, 16))
    layout = Layout(
        tag,
        subnet,
        f"lmbp{tag}",
        f"lmbm{tag}",
        migration_network,
        tuple(
            IsolatedNode(
                name,
                f"livemig-{tag}-{name}",
                f"198.18.{subnet}.{10 + i}",
                f"198.19.{subnet}.{10 + i}",
                f"lp{tag}{i}",
                f"lm{tag}{i}",
            )
            for i, name in enumerate(nodes)
        ),
    )
    (state_dir / RECORD).write_text(layout.to_json())
    try:
        await _make(layout, primary_rate, migration_rate)
    except BaseException:
        await destroy(state_dir)
        raise
    return layout


async def _make(layout: Layout, primary_rate: str | None, migration_rate: str | None) -> None:
    for bridge in (layout.primary_bridge, layout.migration_bridge):
        await _ip("ip", "link", "add", bridge, "type", "bridge")
        await _ip("ip", "link", "set", bridge, "up")
    await _ip("ip", "addr", "add", f"{layout.server_address}/24", "dev", layout.primary_bridge)
    for n in layout.nodes:
        await _ip("ip", "netns", "add", n.netns)
        await _ip("ip", "-n", n.netns, "link", "set", "lo", "up")
        links = (
            (n.primary_link, "eth0", layout.primary_bridge, n.primary_address, primary_rate),
            (
                n.migration_link,
                "mig0",
                layout.migration_bridge,
                n.migration_address,
                migration_rate,
            ),
        )
        for host_end, inside, bridge, address, rate in links:
            peer = host_end + "x"
            await _ip("ip", "link", "add", host_end, "type", "veth", "peer", "name", peer)
            await _ip("ip", "link", "set", peer, "netns", n.netns)
            await _ip("ip", "-n", n.netns, "link", "set", peer, "name", inside)
            await _ip("ip", "-n", n.netns, "addr", "add", f"{address}/24", "dev", inside)
            await _ip("ip", "-n", n.netns, "link", "set", inside, "up")
            await _ip("ip", "link", "set", host_end, "master", bridge)
            await _ip("ip", "link", "set", host_end, "up")
            if rate is not None:
                shape = ("root", "tbf", "rate", rate, "burst", "256kb", "latency", "100ms")
                await _ip("tc", "qdisc", "add", "dev", host_end, *shape)
                await _ip(
                    "ip", "netns", "exec", n.netns, "tc", "qdisc", "add", "dev", inside, *shape
                )


async def pids(netns: str) -> list[int]:
    """The processes running in ``netns`` (its agent and QEMUs)."""
    out = await _ip("ip", "netns", "pids", netns, check=False)
    return [int(p) for p in out.split()]


async def destroy(state_dir: Path) -> None:
    """Remove what ``create`` recorded in ``state_dir`` (nothing if it recorded nothing); the
    namespaces' processes must be gone already."""
    record = state_dir / RECORD
    try:
        layout = Layout.from_json(record.read_text())
    except (OSError, ValueError, TypeError, KeyError):
        return
    for n in layout.nodes:
        for pid in await pids(n.netns):
            log.warning(
                "isolation: process %d still runs in %s; leaving the namespace", pid, n.netns
            )
        await _ip("ip", "netns", "del", n.netns, check=False)  # takes its veth ends along
        for link in (n.primary_link, n.migration_link):
            await _ip("ip", "link", "del", link, check=False)
    for bridge in (layout.primary_bridge, layout.migration_bridge):
        await _ip("ip", "link", "del", bridge, check=False)
    record.unlink(missing_ok=True)


def counters(link: str) -> tuple[int, int]:
    """Bytes (sent, received) by the host-side end of a node's link: what left the node on it
    is what this end received."""
    base = Path("/sys/class/net") / link / "statistics"
    return int((base / "tx_bytes").read_text()), int((base / "rx_bytes").read_text())
