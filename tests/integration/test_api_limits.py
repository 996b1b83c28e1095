"""Input limits at the API's door, over real HTTP on 127.0.0.1 with a real SQLite file: huge
bodies get 413 without stalling the server, malformed JSON gets 400 naming the problem, values no
consumer can take get 422, and nothing is stored."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from livemig.client import ApiClient
from livemig.clock import RealClock
from livemig.errors import LoadError
from livemig.store.sqlite import SQLiteStore

from .test_api_server import POLICY, run

MiB = 2**20
clock = RealClock()


async def raw_request(url: str, head: bytes, body_chunks: AsyncIterator[bytes] | None) -> bytes:
    """Send a request by hand (so we control Content-Length and chunking); the answer."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(head)
        await writer.drain()
        if body_chunks is not None:
            async for chunk in body_chunks:
                if reader.at_eof():
                    break
                try:
                    writer.write(chunk)
                    await writer.drain()
                except ConnectionError:
                    break  # the server answered and hung up, as it should
        return await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()


def headers(url: str, token: str, extra: str) -> bytes:
    host = urlsplit(url).netloc
    return (
        f"POST /apis/policies HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


async def healthz_latencies(url: str, stop: asyncio.Event) -> list[float]:
    seen = []
    async with httpx.AsyncClient(base_url=url) as http:
        while not stop.is_set():
            started = clock.now()
            r = await http.get("/healthz")
            assert r.status_code == 200
            seen.append(clock.now() - started)
            await clock.sleep(0.01)
    return seen


def test_a_50_mb_body_gets_413_at_once_and_the_server_keeps_answering(tmp_path: Path) -> None:
    async def scenario(client: ApiClient, url: str, store: SQLiteStore) -> None:
        token = (tmp_path / "token").read_text().strip()
        stop = asyncio.Event()
        probe = asyncio.create_task(healthz_latencies(url, stop))

        async def fifty_mb(chunked: bool) -> AsyncIterator[bytes]:
            for _ in range(50):
                piece = b"x" * MiB
                yield (b"%x\r\n" % len(piece) + piece + b"\r\n") if chunked else piece
                await asyncio.sleep(0)

        declared = await raw_request(
            url, headers(url, token, f"Content-Length: {50 * MiB}\r\n"), fifty_mb(False)
        )
        assert declared.startswith(b"HTTP/1.1 413"), declared[:200]
        assert b"at most 3Mi per request" in declared
        chunked = await raw_request(
            url, headers(url, token, "Transfer-Encoding: chunked\r\n"), fifty_mb(True)
        )
        assert chunked.startswith(b"HTTP/1.1 413"), chunked[:200]
        stop.set()
        latencies = await probe
        assert latencies and max(latencies) < 1.0  # answering throughout (bench: < 100 ms)
        assert store.list("MigrationPolicy")[0] == []

    run(tmp_path, scenario)


def nested(depth: int) -> dict[str, Any]:
    body = copy.deepcopy(POLICY)
    value: Any = "end"
    for _ in range(depth):
        value = {"x": value}
    body["metadata"]["annotations"] = {}
    body["spec"]["deep"] = value
    return body


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            json.dumps(POLICY)[:-1] + ', "kind": "MigrationPolicy"}',
            'duplicate key "kind"',
        ),
        (
            json.dumps({**POLICY, "metadata": {"name": "fast", "annotations": {"a": "\ud800"}}}),
            "metadata.annotations.a: a string holds invalid Unicode",
        ),
        (json.dumps(nested(150)), "nested deeper than 100 levels"),
        ('{"kind": ' + "[" * 5000 + "]" * 5000 + "}", "nested deeper than 100 levels"),
        ('{"kind": "MigrationPolicy", "x": "\xff"}', "not UTF-8"),
        ("[1, 2]", "must be a JSON object"),
        ('{"kind": "MigrationPolicy",', "not JSON"),
    ],
    ids=["duplicate-key", "lone-surrogate", "deep-150", "deep-5000", "latin-1", "list", "cut"],
)
def test_malformed_json_is_refused_with_400_naming_the_problem(
    tmp_path: Path, body: str, words: str
) -> None:
    async def scenario(client: ApiClient, url: str, store: SQLiteStore) -> None:
        token = (tmp_path / "token").read_text().strip()
        data = body.encode("latin-1") if words == "not UTF-8" else body.encode()
        async with httpx.AsyncClient(base_url=url) as http:
            r = await http.post(
                "/apis/policies",
                content=data,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
        assert r.status_code == 400, r.text
        assert words in r.json()["message"]
        assert store.list("MigrationPolicy")[0] == []

    run(tmp_path, scenario)


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"bandwidthPerMigration": str(2**64)}, "spec.bandwidthPerMigration", "2^64-1"),
        ({"completionTimeoutPerGiB": 2**63}, "spec.completionTimeoutPerGiB", "int64"),
    ],
)
def test_values_no_consumer_can_take_are_422(
    tmp_path: Path, change: dict[str, Any], field: str, words: str
) -> None:
    async def scenario(client: ApiClient, url: str, store: SQLiteStore) -> None:
        body = copy.deepcopy(POLICY)
        body["spec"].update(change)
        with pytest.raises(LoadError) as info:
            await client.create(body)
        (problem,) = info.value.problems
        assert problem.field == field and words in problem.message
        assert store.list("MigrationPolicy")[0] == []

    run(tmp_path, scenario)


def test_cluster_limits_and_vm_sizes_beyond_their_types_are_422(tmp_path: Path) -> None:
    async def scenario(client: ApiClient, url: str, store: SQLiteStore) -> list[str]:
        hco = {
            "apiVersion": "hco.kubevirt.io/v1beta1",
            "kind": "HyperConverged",
            "metadata": {"name": "kubevirt-hyperconverged", "namespace": "openshift-cnv"},
            "spec": {"liveMigrationConfig": {"parallelMigrationsPerCluster": 2**31}},
        }
        vmi = {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": "big", "namespace": "default"},
            "spec": {"domain": {"memory": {"guest": "1e30"}, "cpu": {"cores": 30, "sockets": 10}}},
        }
        messages = []
        for obj in (hco, vmi):
            with pytest.raises(LoadError) as info:
                await client.create(obj)
            messages += [f"{p.field}: {p.message}" for p in info.value.problems]
        return messages

    messages = run(tmp_path, scenario)
    assert any(
        m.startswith("spec.liveMigrationConfig.parallelMigrationsPerCluster:") and "int32" in m
        for m in messages
    ), messages
    assert "spec.domain.memory.guest: '1e30' is above what one machine can hold (16Ti)" in messages
    assert any("300 vCPUs" in m and "at most 255" in m for m in messages), messages
