"""What it costs to refuse hostile input, and whether the server keeps answering meanwhile.

Against a real `livemig server` process (HTTP on 127.0.0.1, SQLite file):
- a 50 MB body, declared with Content-Length and again sent chunked: time to the 413, and the
  server's extra peak memory (VmHWM of its process);
- a 1,000-deep JSON document: time to the 400 and extra memory;
- /healthz polled every 10 ms throughout: the slowest answer.
Against `livemig lint` (a process each, as a user runs it):
- a billion-laughs YAML (9^9 values if expanded) and a 1,000-deep YAML: time to refuse and
  extra peak memory over linting a one-object file.

Targets: each refused in < 1 s, < 100 MiB extra memory, /healthz within 100 ms throughout.

    python bench/input_limits.py
"""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from report import emitter  # bench/report.py, beside this script

emit = emitter("input_limits")
MiB = 2**20
LIVEMIG = str(Path(sys.executable).parent / "livemig")


def hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def reset_hwm(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS


async def send(
    url: str, token: str, extra: str, chunks: AsyncIterator[bytes]
) -> tuple[bytes, float]:
    """Send a request by hand; (the answer's first bytes, seconds until they came)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    head = (
        f"POST /apis/policies HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n{extra}\r\n"
    )
    started = time.perf_counter()
    answer = asyncio.create_task(reader.read(4096))
    writer.write(head.encode())
    try:
        async for chunk in chunks:
            if answer.done():
                break  # refused: stop sending, as a client that reads would
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass  # answered and hung up
    try:
        data = await asyncio.wait_for(answer, 10)
        return data, time.perf_counter() - started
    finally:
        writer.close()


async def fifty_mb(chunked: bool) -> AsyncIterator[bytes]:
    for _ in range(50):
        piece = b"x" * MiB
        yield (b"%x\r\n" % len(piece) + piece + b"\r\n") if chunked else piece


def poll_healthz(url: str, stop: threading.Event, seen: list[float]) -> None:
    """In a thread of its own, so the bench's own sending cannot delay the probe."""
    with httpx.Client(base_url=url) as http:
        while not stop.is_set():
            started = time.perf_counter()
            http.get("/healthz").raise_for_status()
            seen.append(time.perf_counter() - started)
            time.sleep(0.01)


async def against_server(url: str, token: str, pid: int) -> None:
    stop = threading.Event()
    latencies: list[float] = []
    poller = threading.Thread(target=poll_healthz, args=(url, stop, latencies))
    poller.start()
    await asyncio.sleep(0.5)
    deep = '{"kind": "MigrationPolicy", "spec": ' + "[" * 1000 + "]" * 1000 + "}"

    async def one_body() -> AsyncIterator[bytes]:
        yield deep.encode()

    cases = [
        ("body_50mb_declared", f"Content-Length: {50 * MiB}\r\n", fifty_mb(False), b"413"),
        ("body_50mb_chunked", "Transfer-Encoding: chunked\r\n", fifty_mb(True), b"413"),
        ("json_1000_deep", f"Content-Length: {len(deep)}\r\n", one_body(), b"400"),
    ]
    for figure, extra, chunks, status in cases:
        reset_hwm(pid)
        before = hwm_kib(pid)
        answer, took = await send(url, token, extra, chunks)
        assert status in answer.split(b"\r\n", 1)[0], answer[:200]
        emit(f"{figure}_refused", round(took, 4), "s", "< 1 s")
        emit(f"{figure}_extra_memory", round((hwm_kib(pid) - before) / 1024, 1), "MiB", "< 100")
        await asyncio.sleep(0.5)
    stop.set()
    poller.join()
    emit("healthz_first_ms", round(latencies[0] * 1000, 1), "ms (connection set-up)")
    emit("healthz_p50_during", round(statistics.median(latencies) * 1000, 1), "ms")
    emit("healthz_worst_during", round(max(latencies) * 1000, 1), "ms", "< 100")
    emit("healthz_worst_after_first", round(max(latencies[1:]) * 1000, 1), "ms", "< 100")
    emit("healthz_answers_during", len(latencies), "count")


def billion_laughs() -> str:
    lines = ['  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"  {name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
        previous = name
    return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n" + "\n".join(lines) + "\n"


def lint_cost(path: Path) -> tuple[float, int]:
    """(seconds, peak RSS in KiB) of `livemig lint -f path` in its own process."""
    code = (
        "import resource, sys, time, subprocess;"
        "t = time.perf_counter();"
        f"r = subprocess.run([{LIVEMIG!r}, 'lint', '-f', sys.argv[1]], capture_output=True);"
        "took = time.perf_counter() - t;"
        "print(took, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    took, rss, _ = out.stdout.split()
    return float(took), int(rss)


def against_lint(folder: Path) -> None:
    small = folder / "small.yaml"
    small.write_text(
        "apiVersion: migrations.kubevirt.io/v1alpha1\nkind: MigrationPolicy\n"
        "metadata: {name: p}\nspec: {selectors: {}}\n"
    )
    base_time, base_rss = lint_cost(small)
    cases = {
        "yaml_billion_laughs": billion_laughs(),
        "yaml_1000_deep": "apiVersion: v1\nkind: X\nmetadata: {name: x}\ndeep: "
        + "[" * 1000
        + "]" * 1000
        + "\n",
    }
    for figure, text in cases.items():
        path = folder / f"{figure}.yaml"
        path.write_text(text)
        took, rss = lint_cost(path)
        emit(f"{figure}_refused", round(took - base_time, 4), "s beyond a 1-object lint", "< 1 s")
        emit(f"{figure}_extra_memory", round((rss - base_rss) / 1024, 1), "MiB", "< 100")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="livemig-bench-") as tmp:
        folder = Path(tmp)
        state = folder / "state"
        server = subprocess.Popen(
            [LIVEMIG, "server", "--state", str(state), "--port", "0", "--no-controller"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while not (state / "endpoint.json").exists():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"livemig server did not start: {server.stderr}")
                time.sleep(0.05)
            url = json.loads((state / "endpoint.json").read_text())["url"]
            token = (state / "token").read_text().strip()
            asyncio.run(against_server(url, token, server.pid))
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(30)
        against_lint(folder)
    emit("peak_rss_bench_process", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "KiB")


if __name__ == "__main__":
    main()
