"""Running the API server: its token, and uvicorn inside our own event loop."""

from __future__ import annotations

import asyncio
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from livemig.clock import Clock, RealClock
from livemig.server.app import create_app
from livemig.store import Store

TOKEN_FILE = "token"


def ensure_token(state_dir: Path) -> str:
    """The cluster's bearer token, generated on first start and readable only by its owner."""
    state_dir.mkdir(parents=True, exist_ok=True)
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

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


async def start_server(
    store: Store, token: str, host: str = "127.0.0.1", port: int = 0, clock: Clock | None = None
) -> RunningServer:
    """Serve in this event loop; return once listening (port 0 picks a free port)."""
    config = uvicorn.Config(
        create_app(store, token), host=host, port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
        await (clock or RealClock()).sleep(0.01)
    sock = server.servers[0].sockets[0].getsockname()
    return RunningServer(server, task, f"http://{sock[0]}:{sock[1]}")
