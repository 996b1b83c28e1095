"""Chaos: migrations under random faults, on a split-mode cluster of real processes.

`livemig server` (with the controller) and three `livemig agent` processes run 12 test-guest
VMs with mixed dirty rates (the dirtiest switch to post-copy by a policy). While 40 migrations
run, three at a time, a fault is injected every few seconds, chosen at random from a seed:

    server      kill -9 of the API server + controller, restarted 0.3-8 s later
    agent       kill -9 of a node agent, restarted 0.3-8 s later
    source      kill -9 of the source QEMU of a running migration (or of any VM)
    target      kill -9 of the target QEMU of a running migration
    link        the migration link of a post-copy migration reset (ss -K; root only)

At the end it prints (one JSON line per figure): migrations succeeded, failed by reason, VMs
running exactly once (target: all), unmanaged QEMUs (target: 0), objects lost (target: 0), and
the time from each fault to a settled state, where every VM runs exactly once (p50, p95, max;
the next fault waits for it).

    python bench/chaos.py [--seed 7] [--vms 12] [--migrations 40] [--fault-every 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from livemig.api.builders import hyperconverged, make_test_guest_vm, migration_request
from livemig.api.lifecycle import MigrationStatus, Phase
from livemig.api.vmi_status import VMIStatus
from livemig.audit import audit, ledgers, qemu_folders_under, qemu_processes
from livemig.client import ApiClient
from livemig.errors import LivemigError
from livemig.server.run import ensure_token
from report import emitter  # bench/report.py, beside this script

emit = emitter("chaos")
LIVEMIG = str(Path(sys.executable).parent / "livemig")
NODES = ("node-1", "node-2", "node-3")
NS = "chaos"
RATES = ("0", "1Mi", "4Mi", "24Mi")
SETTLE_LIMIT = 120.0  # the last is a "db": post-copy by policy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """One livemig process, logged to a file, restartable."""

    def __init__(self, folder: Path, name: str, *args: str) -> None:
        self.name = name
        self.args = args
        self.log = folder / f"{name}.log"
        self.env = {**os.environ, "LIVEMIG_STATE": str(folder / "state")}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [LIVEMIG, *self.args], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Chaos:
    def __init__(self, folder: Path, args: argparse.Namespace) -> None:
        self.folder = folder
        self.state = folder / "state"
        self.args = args
        self.rng = random.Random(args.seed)
        port = str(free_port())
        self.url = f"http://127.0.0.1:{port}"
        self.server = Proc(folder, "server", "server", "--port", port)
        give_up = ("--postcopy-give-up", "20")
        self.agents = {
            n: Proc(folder, n, "agent", "--node", n, "--memory", "3Gi", *give_up) for n in NODES
        }
        self.vms = [(NS, f"vm-{i:02d}") for i in range(args.vms)]
        self.created: list[str] = []  # migration names
        self.last_phase: dict[str, str] = {}
        self.reasons: dict[str, str] = {}  # failed migration → its reason, particulars out
        self.recovered: dict[str, int] = {}  # migration → post-copy recovery offers made
        self.faults: list[tuple[str, float]] = []  # (kind, when)
        self.settle_times: list[float] = []
        self.unsettled = 0  # faults after which the cluster did not settle in SETTLE_LIMIT
        self.client: ApiClient | None = None
        self.can_cut = os.geteuid() == 0

    # --- set-up ------------------------------------------------------------------------------

    async def up(self) -> ApiClient:
        self.state.mkdir(parents=True, mode=0o700)
        token = ensure_token(self.state)
        (self.state / "endpoint.json").write_text(json.dumps({"url": self.url}))
        self.server.start()
        for p in self.agents.values():
            p.start()
        self.client = ApiClient(self.url, token)
        await self.until("the server answers", self.answers, 30)
        await self.until("three nodes", self.three_nodes, 30)
        return self.client

    async def answers(self) -> bool:
        try:
            assert self.client is not None
            await self.client.list("Node")
        except Exception:
            return False
        return True

    async def three_nodes(self) -> bool:
        assert self.client is not None
        return len((await self.client.list("Node"))[0]) == len(NODES)

    async def until(self, what: str, check: Any, within: float) -> None:
        deadline = time.monotonic() + within
        while not await check():
            if time.monotonic() > deadline:
                raise SystemExit(f"chaos: timed out waiting for {what}")
            await asyncio.sleep(0.2)

    async def populate(self, client: ApiClient) -> None:
        await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        await client.create(
            hyperconverged(bandwidthPerMigration="8Mi", parallelMigrationsPerCluster=3)
        )
        await client.create(
            {
                "apiVersion": "migrations.kubevirt.io/v1alpha1",
                "kind": "MigrationPolicy",
                "metadata": {"name": "db"},
                "spec": {
                    "selectors": {"virtualMachineInstanceSelector": {"workload": "db"}},
                    "allowPostCopy": True,
                    "allowWorkloadDisruption": True,
                    "completionTimeoutPerGiB": 16,
                    "bandwidthPerMigration": "4Mi",  # post-copy lasts, for link faults
                },
            }
        )
        for i, (ns, name) in enumerate(self.vms):
            rate = RATES[i % len(RATES)]
            labels = {"workload": "db"} if rate == RATES[-1] else {"workload": "web"}
            await client.create(make_test_guest_vm(name, ns, labels, rate, "32Mi", "128Mi"))
        await self.until("every VM running exactly once", self.settled, 120)

    async def settled(self) -> bool:
        assert self.client is not None
        try:
            return (await audit(self.client, self.state, self.vms)).ok
        except Exception:
            return False

    # --- the migrations ------------------------------------------------------------------------

    async def migrations(self) -> list[dict[str, Any]]:
        assert self.client is not None
        items, _ = await self.client.list("VirtualMachineInstanceMigration", NS)
        for m in items:
            st = MigrationStatus.of(m)
            self.last_phase[m["metadata"]["name"]] = st.phase.value
            if st.phase is Phase.FAILED:
                self.reasons[m["metadata"]["name"]] = _reason(st.reason)
            if st.recoveries:
                self.recovered[m["metadata"]["name"]] = st.recoveries
        return items

    async def drive(self) -> None:
        """Create migrations, at most three unfinished at a time, until all are made."""
        assert self.client is not None
        while len(self.created) < self.args.migrations:
            try:
                items = await self.migrations()
                busy = {m["spec"]["vmiName"] for m in items if MigrationStatus.of(m).is_active}
                if len(busy) < 3:
                    idle = [name for _, name in self.vms if name not in busy]
                    name = f"m-{len(self.created):03d}"
                    vm = self.rng.choice(idle)
                    await self.client.create(migration_request(name, vm, NS))
                    self.created.append(name)
                    continue
            except (LivemigError, OSError, Exception) as exc:
                if "already has an unfinished migration" not in str(exc):
                    await asyncio.sleep(0.5)
            await asyncio.sleep(0.3)

    async def all_finished(self) -> bool:
        try:
            items = await self.migrations()
        except Exception:
            return False
        names = {m["metadata"]["name"] for m in items}
        unfinished = [m for m in items if not MigrationStatus.of(m).finished]
        gone = [n for n in self.created if n not in names]
        return not unfinished and all(
            self.last_phase.get(n) in ("Succeeded", "Failed") for n in gone
        )

    # --- the faults ------------------------------------------------------------------------------

    async def inject(self, stop: asyncio.Event) -> None:
        """A fault every few seconds; after each, the time until every VM runs exactly once
        again is measured before the next one comes (so each time is that fault's own)."""
        kinds = ["server", "agent", "source", "target"] + (["link"] if self.can_cut else [])
        while not stop.is_set():
            await asyncio.sleep(self.args.fault_every * self.rng.uniform(0.5, 1.5))
            if stop.is_set():
                return
            kind = self.rng.choice(kinds)
            began = time.monotonic()
            if not await getattr(self, f"fault_{kind}")():
                continue  # nothing to hit (no migration running, none in post-copy)
            self.faults.append((kind, began))
            await self.time_to_settle(began)

    async def time_to_settle(self, since: float) -> None:
        while time.monotonic() - since < SETTLE_LIMIT:
            if await self.settled():
                self.settle_times.append(time.monotonic() - since)
                return
            await asyncio.sleep(0.25)
        self.unsettled += 1

    async def restart_later(self, proc: Proc) -> None:
        await asyncio.sleep(self.rng.uniform(0.3, 8.0))
        proc.start()

    async def fault_server(self) -> bool:
        self.server.kill9()
        await self.restart_later(self.server)
        return True

    async def fault_agent(self) -> bool:
        proc = self.agents[self.rng.choice(NODES)]
        proc.kill9()
        await self.restart_later(proc)
        return True

    async def running(self) -> list[MigrationStatus]:
        try:
            return [
                st
                for st in (MigrationStatus.of(m) for m in await self.migrations())
                if st.phase is Phase.RUNNING
            ]
        except Exception:
            return []

    async def vm_pid(self, name: str) -> int | None:
        assert self.client is not None
        try:
            vmi = await self.client.get("VirtualMachineInstance", name, NS)
        except Exception:
            return None
        if VMIStatus.of(vmi).node is None:
            return None
        for c in (vmi.get("status") or {}).get("conditions", []):
            if c.get("type") == "Ready" and (found := re.search(r"pid (\d+)", c["message"])):
                return int(found.group(1))
        return None

    async def fault_source(self) -> bool:
        items = await self.migrations() if await self.answers() else []
        moving = [m for m in items if MigrationStatus.of(m).phase is Phase.RUNNING]
        names = [m["spec"]["vmiName"] for m in moving] or [n for _, n in self.vms]
        pid = await self.vm_pid(self.rng.choice(names))
        return pid is not None and _kill(pid)

    def incoming_pids(self, node: str) -> list[int]:
        book = ledgers(self.state).get(node, {})
        handles = {e["handle"] for e in (book.get("incoming") or {}).values()}
        return [pid for pid, folder in qemu_folders_under(self.state).items() if folder in handles]

    async def fault_target(self) -> bool:
        targets = [st.target_node for st in await self.running() if st.target_node]
        pids = [p for node in targets for p in self.incoming_pids(node)]
        return bool(pids) and _kill(self.rng.choice(pids))

    async def fault_link(self) -> bool:
        deadline = time.monotonic() + 15  # post-copy is rarer: wait a little for one
        while True:
            post = [st for st in await self.running() if st.in_post_copy and st.target_node]
            pids = [p for st in post for p in self.incoming_pids(str(st.target_node))]
            if pids or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        if not pids:
            return False
        return await asyncio.to_thread(_cut, self.rng.choice(pids))

    # --- the run ---------------------------------------------------------------------------------

    async def run(self) -> None:
        client = await self.up()
        try:
            await self.populate(client)
            stop = asyncio.Event()
            injector = asyncio.create_task(self.inject(stop))
            began = time.monotonic()
            await self.drive()
            await self.until("every migration to finish", self.all_finished, 900)
            stop.set()
            await injector
            for p in (self.server, *self.agents.values()):  # whatever a fault left stopped
                if p.proc is None or p.proc.poll() is not None:
                    p.start()
            await self.until("a settled cluster", self.settled, 180)
            await asyncio.sleep(1.0)
            found = await audit(client, self.state, self.vms)
            self.report(found, await self.objects_lost(), time.monotonic() - began)
        finally:
            await client.close()
            for p in (*self.agents.values(), self.server):
                p.stop()
            for pid in qemu_processes(self.state):
                _kill(pid)

    async def objects_lost(self) -> int:
        """Objects we created that are gone without a reason: VMs, and migrations neither in
        the API nor seen finished (the controller deletes finished ones beyond 5 per VM)."""
        assert self.client is not None
        present = {m["metadata"]["name"] for m in await self.migrations()}
        lost = sum(
            1
            for n in self.created
            if n not in present and self.last_phase.get(n) not in ("Succeeded", "Failed")
        )
        vms, _ = await self.client.list("VirtualMachine", NS)
        return lost + len(self.vms) - len(vms)

    def report(self, found: Any, lost: int, took: float) -> None:
        items = self.last_phase
        succeeded = sum(1 for n in self.created if items.get(n) == "Succeeded")
        emit("migrations", len(self.created), "count")
        emit("succeeded", succeeded, "count")
        reasons: Counter[str] = Counter()
        for name in self.created:
            if items.get(name) == "Failed":
                reasons[self.reasons.get(name, "?")] += 1
        for reason, n in reasons.most_common():
            emit(f"failed: {reason}", n, "count")
        saved = [n for n in self.recovered if items.get(n) == "Succeeded"]
        emit("post-copy migrations whose link broke and that still succeeded", len(saved), "count")
        emit("faults injected", len(self.faults), "count")
        for kind, n in Counter(k for k, _ in self.faults).most_common():
            emit(f"faults: {kind}", n, "count")
        emit(
            "VMs running exactly once",
            len(self.vms) - len(found.wrong),
            "count",
            f"all {len(self.vms)}",
        )
        emit("unmanaged QEMUs", len(found.unmanaged), "count", "0")
        emit("objects lost", lost, "count", "0")
        if self.settle_times:
            times = sorted(self.settle_times)
            emit("fault to settled p50", round(statistics.median(times), 2), "s")
            emit("fault to settled p95", round(times[int(0.95 * (len(times) - 1))], 2), "s")
            emit("fault to settled max", round(times[-1], 2), "s")
        emit("faults never settled (120 s)", self.unsettled, "count", "0")
        emit("run time", round(took, 1), "s")
        if not found.ok:
            print(f"# not exactly once: {found}", file=sys.stderr)


def _cut(pid: int) -> bool:
    """Reset the TCP connections (the migration streams) of QEMU ``pid``, as a broken link."""
    listed = subprocess.run(
        ["ss", "-tnpH", "state", "established"], capture_output=True, text=True, check=False
    ).stdout
    ports = {ln.split()[2].rsplit(":", 1)[1] for ln in listed.splitlines() if f"pid={pid}," in ln}
    for port in ports:
        subprocess.run(["ss", "-K", "sport", "=", port], capture_output=True, check=False)
    return bool(ports)


def _kill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def _reason(text: str | None) -> str:
    """A failure reason with its particulars (pids, names, numbers) taken out, to count."""
    text = re.sub(r"\(QEMU: .*\)", "(QEMU: …)", text or "?")
    text = re.sub(r"vm-\d+|m-\d+|chaos_vm-\d+", "VM", text)
    return re.sub(r"\d+(\.\d+)?", "N", text)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--vms", type=int, default=12)
    parser.add_argument("--migrations", type=int, default=40)
    parser.add_argument("--fault-every", type=float, default=4.0, metavar="SECONDS")
    parser.add_argument("--keep", action="store_true", help="keep the state folder and logs")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="livemig-chaos-"))
    await Chaos(folder, args).run()
    if args.keep:
        print(f"# state and logs kept in {folder}", file=sys.stderr)
    else:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
