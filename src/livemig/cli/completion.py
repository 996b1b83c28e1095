"""Shell completion (``livemig --install-completion``): kinds, and object names from the
cluster the command would talk to. Completion must never hang or print an error into the
shell: anything that goes wrong completes nothing."""

from __future__ import annotations

import asyncio
import os

import click

from livemig.api.models import KINDS, resolve_kind

#: What a user types for each kind (the short names first).
KIND_WORDS = [
    "vm",
    "vmi",
    "vmim",
    "mp",
    "hco",
    "node",
    "ns",
    "event",
    "virtualmachines",
    "virtualmachineinstances",
    "virtualmachineinstancemigrations",
    "migrationpolicies",
    "nodes",
    "events",
    *sorted(k.lower() for k in KINDS),
]
#: Seconds a completion may take before it gives up.
COMPLETION_TIMEOUT = 2.0


def complete_names(kind: str, incomplete: str) -> list[str]:
    """Names of ``kind`` objects starting with ``incomplete`` (none if the cluster is not
    reachable)."""
    from livemig.client import ApiClient
    from livemig.cluster import default_state_dir, find_cluster

    async def names() -> list[str]:
        server, token = os.environ.get("LIVEMIG_SERVER"), os.environ.get("LIVEMIG_TOKEN")
        if not server:
            server, found = find_cluster(default_state_dir())
            token = token or found
        async with ApiClient(server, token or "") as client:
            items, _ = await client.list(kind)
        return sorted({o["metadata"]["name"] for o in items})

    try:
        found = asyncio.run(asyncio.wait_for(names(), COMPLETION_TIMEOUT))
    except Exception:  # completion must never break the shell
        return []
    return [n for n in found if n.startswith(incomplete)]


def complete_kind_or_name(ctx: click.Context, args: list[str], incomplete: str) -> list[str]:
    """The first word is a kind (or KIND/NAME); later words are names of that kind."""
    given = [a for a in (ctx.params.get("what") or []) if a]
    if not given:
        if "/" in incomplete:
            kind, _, partial = incomplete.partition("/")
            cls = resolve_kind(kind)
            return [f"{kind}/{n}" for n in complete_names(cls.KIND, partial)] if cls else []
        return [w for w in KIND_WORDS if w.startswith(incomplete.lower())]
    cls = resolve_kind(given[0])
    return complete_names(cls.KIND, incomplete) if cls else []
