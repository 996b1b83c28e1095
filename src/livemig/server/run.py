"""Running the API server: its token, and uvicorn inside our own event loop."""

from __future__ import annotations

import asyncio
import errno
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from livemig.clock import Clock, RealClock
from livemig.errors import UsageError
from livemig.policy import DefaultsProfile
from livemig.server.app import create_app
from livemig.store import Store

TOKEN_FILE = "token"


def make_state_dir(state_dir: Path) -> None:
    """Create the state folder (and parents), readable by its owner only: it holds the token,
    the database and the VMs' sockets."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if state_dir.stat().st_mode & 0o077:
        state_dir.chmod(0o700)


def ensure_token(state_dir: Path) -> str:
    """The cluster's bearer token, generated on first start and readable only by its owner."""
    make_state_dir(state_dir)
    path = state_dir / TOKEN_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


@dataclass
class RunningServer:
    server: uvicorn.Server
    task: asyncio.Task[None]
    url: str
    stopping: asyncio.Event

    async def stop(self) -> None:
        self.stopping.set()  # open watch streams end now, so their connections can close
        self.server.should_exit = True
        await self.task


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, or UsageError saying why not (the port is taken…) in one line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP said explicitly: asyncio sets TCP_NODELAY on accepted connections only when
    # the listening socket's proto is TCP; with proto 0 every keep-alive answer waited ~40 ms
    # for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        hint = (
            " (another livemig server? stop it or choose another --port)"
            if exc.errno == errno.EADDRINUSE
            else ""
        )
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from exc
    sock.setblocking(False)
    return sock


async def start_server(
    store: Store,
    token: str,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Clock | None = None,
    defaults: DefaultsProfile = DefaultsProfile.DOCUMENT,
    also_on: tuple[str, ...] = (),
) -> RunningServer:
    """Serve in this event loop; return once listening (port 0 picks a free port). ``also_on``:
    more addresses to listen on, at the same port (an isolated cluster's primary network)."""
    sock = listen(host, port)
    port = sock.getsockname()[1]
    try:
        more = [listen(h, port) for h in also_on]
    except BaseException:
        sock.close()
        raise
    stopping = asyncio.Event()
    config = uvicorn.Config(
        create_app(store, token, stopping, clock, defaults),
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock, *more]))
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
        await (clock or RealClock()).sleep(0.01)
    address, bound_port = sock.getsockname()[:2]
    shown = f"[{address}]" if ":" in address else address
    return RunningServer(server, task, f"http://{shown}:{bound_port}", stopping)
