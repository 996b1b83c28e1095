"""Real QEMU VMs, driven over QMP (the ``qemu.qmp`` library) — the only module that imports it.

Each VM is one ``qemu-system-x86_64`` process with a folder of its own: QMP and serial-console
unix sockets, its (test-guest) disk image and a log of QEMU's stderr. KVM is used when a probe
guest actually boots under it (``/dev/kvm`` existing is not enough); otherwise TCG.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import signal
import stat
import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

from qemu.qmp import ConnectError, ExecuteError, QMPClient, QMPError

from livemig.clock import Clock, RealClock
from livemig.errors import HypervisorError, VMGone
from livemig.hypervisor import (
    MemoryCheck,
    MigrationParams,
    TransferStats,
    TransferStatus,
    VMSpec,
    testguest,
)
from livemig.hypervisor.disks import blockdev, open_confined
from livemig.hypervisor.processes import qemu_folders
from livemig.tasks import cancel_and_wait

log = logging.getLogger(__name__)

QEMU_BINARY = "qemu-system-x86_64"
INSTALL_HINT = (
    "install it with `sudo apt-get install qemu-system-x86` (Debian, Ubuntu) or "
    "`sudo dnf install qemu-system-x86` (Fedora)"
)


def qemu_missing(binary: str = QEMU_BINARY) -> str | None:
    """Why QEMU cannot be run here (with how to fix it), or None if it can."""
    if shutil.which(binary) is None:
        return f"QEMU is not installed ({binary} is not on PATH): {INSTALL_HINT}"
    return None


DISK_FDSET = 1


def _option(text: str) -> str:
    """``text`` as a value in QEMU's ``key=value,…`` option syntax (a comma is doubled)."""
    return text.replace(",", ",,")


#: QEMU caps migration bandwidth at 128 MiB/s by default; "no limit" must be said explicitly.
UNLIMITED_BANDWIDTH = 2**40
BOOT_TIMEOUT = 10.0
#: Seconds QEMU has to answer a QMP command (a hung one is an error, not a hung agent), and to
#: act on "quit" (then it is killed).
QMP_TIMEOUT, QUIT_TIMEOUT = 10.0, 3.0
_kvm_verdict: dict[str, bool] = {}


class QemuVM:
    """One QEMU process: QMP for control, the serial console for the test guest."""

    def __init__(
        self, spec: VMSpec, folder: Path, clock: Clock, disk_root: Path | None = None
    ) -> None:
        self.name = spec.name
        self.disk_root = disk_root  # hostDisk images must lie in here (None: not checked)
        self.spec = spec
        self.folder = folder
        self.clock = clock
        self.process: asyncio.subprocess.Process | None = None
        self.qmp = QMPClient(spec.name)
        self.console: list[str] = []  # serial lines, in order
        self._console_changed = asyncio.Event()
        self._serial_writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._migration_event = asyncio.Event()
        self._migration_started: float | None = None
        self.working_set = spec.working_set if spec.disk is None else 0
        self.listen_uri: str | None = None  # an incoming VM's actual migration address
        self._adopted_pid: int | None = None  # set when attached to a QEMU we did not start

    # --- life cycle ----------------------------------------------------------------------

    @property
    def socket_dir(self) -> Path:
        """The VM's folder, or a short stand-in: unix socket paths must stay under 108 bytes."""
        if len(str(self.folder / "serial.sock")) < 100:
            return self.folder
        digest = hashlib.sha256(str(self.folder.resolve()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"livemig-{digest}"

    @property
    def qmp_path(self) -> Path:
        return self.socket_dir / "qmp.sock"

    @property
    def serial_path(self) -> Path:
        return self.socket_dir / "serial.sock"

    @property
    def pid(self) -> int | None:
        if self.process is not None:
            return self.process.pid
        return self._adopted_pid

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.returncode is None
        return self._adopted_pid is not None and self._is_ours(self._adopted_pid)

    def _is_ours(self, pid: int) -> bool:
        """Whether ``pid`` still is this VM's QEMU: alive, and started with our QMP socket
        (a PID from a ledger may have been reused by any other process since)."""
        if not _pid_alive(pid):
            return False
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        marker = _option(str(self.qmp_path)).encode()
        return any(b"qemu-system" in a for a in args[:1]) and any(marker in a for a in args)

    def _find_process(self) -> int | None:
        """The running QEMU of this folder: the pid QEMU itself wrote (``-pidfile``), checked
        against its command line, else a search by command line (an agent killed while QEMU
        was starting may find no pid file yet, or one of an earlier QEMU)."""
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.folder / "qemu.pid").read_text())
            if self._is_ours(pid):
                return pid
        return next((p for p, f in qemu_folders().items() if f == self.folder), None)

    @classmethod
    async def attach(cls, spec: VMSpec, folder: Path, clock: Clock) -> QemuVM:
        """Take over a QEMU this process did not start (an agent restarting), by its folder."""
        vm = cls(spec, folder, clock)
        vm._adopted_pid = vm._find_process()
        if vm._adopted_pid is None:
            raise VMGone(f"{spec.name}: QEMU is gone: no QEMU process runs {folder}")
        if not vm.alive():
            raise VMGone(
                f"{spec.name}: QEMU {vm._adopted_pid} is gone (or that PID is now another "
                "process, which is left alone)"
            )
        await vm._connect()
        return vm

    async def launch(self, binary: str, accel: str, incoming: bool) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.folder / "name").write_text(self.name + "\n")
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        check_private_folder(self.socket_dir)
        for sock in (self.qmp_path, self.serial_path):
            sock.unlink(missing_ok=True)
        disk, root = self.spec.disk, self.disk_root
        if disk is None:
            disk_path = self.folder / "test-guest.img"
            disk_path.write_bytes(testguest.image(self.spec.working_set, self.spec.dirty_rate))
            os.truncate(disk_path, testguest.IMAGE_SIZE)
            disk, root = str(disk_path), self.folder
        # The disk reaches QEMU as an open descriptor in an fd set, described in JSON: no path
        # is parsed by QEMU's option syntax, and only this regular file can be opened.
        disk_fd = open_confined(disk, root)
        args = [
            binary,
            "-name", f"guest={_option(self.name)}",
            # QEMU's own pidfile: also puts the VM's folder on its command line, where an
            # operator (and the tests' leak check) can see which VM a process is.
            "-pidfile", str(self.folder / "qemu.pid"),
            "-accel", accel,
            "-m", f"{self.spec.memory // 2**20}M",
            "-smp", str(self.spec.vcpus),
            "-display", "none",
            "-nodefaults",
            "-no-user-config",
            "-qmp", f"unix:{_option(str(self.qmp_path))},server=on,wait=off",
            "-chardev",
            f"socket,id=console,path={_option(str(self.serial_path))},server=on,wait=off",
            "-serial", "chardev:console",
            "-add-fd", f"fd={disk_fd},set={DISK_FDSET},opaque=disk",
            "-blockdev", blockdev(DISK_FDSET),
            "-device", "virtio-blk-pci,drive=disk0,bootindex=0",
            *self.spec.extra_args,
        ]  # fmt: skip
        # Both start stopped: a VM runs only once QMP and its console are connected (a fast
        # guest was seen to print READY before anyone listened); an incoming one runs when the
        # migration ends.
        args += ["-incoming", "defer"] if incoming else ["-S"]
        stderr = (self.folder / "qemu.log").open("ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                pass_fds=(disk_fd,),
            )
        finally:
            stderr.close()
            os.close(disk_fd)
        await self._connect()

    async def _connect(self) -> None:
        deadline = self.clock.now() + BOOT_TIMEOUT
        while True:
            if not self.alive():
                raise HypervisorError(f"QEMU for {self.name} exited: {self._log_tail()}")
            # Connect only once the socket exists: every failed QMPClient.connect leaves
            # internal tasks behind in qemu.qmp.
            if self.qmp_path.exists() and self.serial_path.exists():
                try:
                    # QEMU serves one QMP client at a time: a connect can wait for a previous
                    # client's hang-up (an agent restarting), so it must not wait forever.
                    await self.clock.wait_for(self.qmp.connect(str(self.qmp_path)), 5)
                    break
                except (ConnectError, OSError, TimeoutError) as exc:
                    with contextlib.suppress(QMPError, OSError, EOFError):
                        await self.qmp.disconnect()  # drop a half-open attempt before retrying
                    if self.clock.now() > deadline:
                        raise HypervisorError(f"no QMP from {self.name}: {exc}") from exc
            elif self.clock.now() > deadline:
                raise HypervisorError(
                    f"QEMU for {self.name} opened no QMP socket: {self._log_tail()}"
                )
            await self.clock.sleep(0.005)
        reader, self._serial_writer = await asyncio.open_unix_connection(str(self.serial_path))
        self._tasks.append(asyncio.create_task(self._read_console(reader)))
        self._tasks.append(asyncio.create_task(self._read_events()))

    def _log_tail(self) -> str:
        path = self.folder / "qemu.log"
        return path.read_text(errors="replace")[-500:].strip() if path.exists() else ""

    async def _read_console(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            self.console.append(line.decode(errors="replace").rstrip("\r\n"))
            self._console_changed.set()

    async def _read_events(self) -> None:
        with contextlib.suppress(QMPError, asyncio.CancelledError):
            async for event in self.qmp.events:
                if event["event"] in ("MIGRATION", "MIGRATION_PASS"):
                    self._migration_event.set()

    async def wait_console(self, text: str, within: float = BOOT_TIMEOUT) -> str:
        """The first console line (from now on or already seen) that contains ``text``."""
        deadline = self.clock.now() + within
        seen = 0
        while True:
            for line in self.console[seen:]:
                if text in line:
                    return line
            seen = len(self.console)
            self._console_changed.clear()
            left = deadline - self.clock.now()
            if left <= 0:
                raise HypervisorError(
                    f"{self.name}: no {text!r} on the console within {within} s "
                    f"(last lines: {self.console[-3:]})"
                )
            with contextlib.suppress(TimeoutError):
                await self.clock.wait_for(self._console_changed.wait(), left)

    async def stop(self) -> None:
        """Quit QEMU (or kill it) and release everything; safe to call twice."""
        # QEMU closing the socket after "quit" surfaces as EOFError from the disconnect.
        if self.qmp.runstate.name == "RUNNING":
            with contextlib.suppress(QMPError, OSError, EOFError, TimeoutError):
                await self.clock.wait_for(self.qmp.execute("quit"), QUIT_TIMEOUT)
        await self.detach()
        if self.process is not None and self.process.returncode is None:
            try:
                await self.clock.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.kill()
                await self.process.wait()
        elif self._adopted_pid is not None:
            deadline = self.clock.now() + 5
            while self._is_ours(self._adopted_pid) and self.clock.now() < deadline:
                await self.clock.sleep(0.02)
            self.kill()
        if self.socket_dir != self.folder:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    async def detach(self) -> None:
        """Let go of QMP and the console but leave QEMU running (an agent restarting)."""
        with contextlib.suppress(QMPError, OSError, EOFError, TimeoutError):
            await self.clock.wait_for(self.qmp.disconnect(), QUIT_TIMEOUT)
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks.clear()
        if self._serial_writer is not None:
            self._serial_writer.close()
            self._serial_writer = None

    def kill(self) -> None:
        """SIGKILL the QEMU process (tests use it to lose a target)."""
        with contextlib.suppress(ProcessLookupError):  # it may end between check and kill
            if self.process is not None and self.process.returncode is None:
                self.process.kill()
            elif self._adopted_pid is not None and self._is_ours(self._adopted_pid):
                os.kill(self._adopted_pid, signal.SIGKILL)

    # --- QMP -------------------------------------------------------------------------------

    async def execute(self, cmd: str, arguments: dict[str, Any] | None = None) -> Any:
        """One QMP command; HypervisorError if QEMU refuses it or does not answer within
        QMP_TIMEOUT (a QEMU can hang, e.g. in a broken post-copy: one VM's QEMU must never
        hold up the agent's whole pass)."""
        try:
            return await self.clock.wait_for(self.qmp.execute(cmd, arguments), QMP_TIMEOUT)
        except TimeoutError as exc:
            raise HypervisorError(
                f"{self.name}: QEMU did not answer QMP {cmd} within {QMP_TIMEOUT:.0f} s",
                command=cmd,
                arguments=arguments,
            ) from exc
        except ExecuteError as exc:
            raise HypervisorError(
                f"{self.name}: QMP {cmd} {arguments or ''} failed: {exc.error.error.desc}",
                command=cmd,
                arguments=arguments,
            ) from exc
        except QMPError as exc:
            raise HypervisorError(f"{self.name}: QMP {cmd} failed: {exc}", command=cmd) from exc

    async def set_capabilities(self, params: MigrationParams) -> None:
        caps = {"events": True, "postcopy-ram": params.post_copy}
        if params.auto_converge:
            caps["auto-converge"] = True
        await self.execute(
            "migrate-set-capabilities",
            {"capabilities": [{"capability": c, "state": s} for c, s in caps.items()]},
        )

    async def listen(self, uri: str) -> str:
        """Start accepting the incoming migration; the actual address (port 0 is filled in)."""
        await self.execute("migrate-incoming", {"uri": uri})
        return await self._listening(uri)

    async def _listening(self, uri: str) -> str:
        """The address an incoming VM listens on for ``uri`` (port 0 filled in)."""
        if uri.startswith("tcp:") and uri.endswith(":0"):
            info = await self.execute("query-migrate")
            found = [a for a in info.get("socket-address", []) if a.get("type") == "inet"]
            if found:  # after a recovery the newest listener is last
                return f"tcp:{found[-1]['host']}:{found[-1]['port']}"
        return uri

    async def start_migration(self, uri: str, params: MigrationParams) -> None:
        await self.set_capabilities(params)
        await self.execute(
            "migrate-set-parameters",
            {
                "max-bandwidth": params.bandwidth or UNLIMITED_BANDWIDTH,
                # bandwidthPerMigration caps post-copy's background push too (0: no cap);
                # the guest's own page requests are always served at once.
                "max-postcopy-bandwidth": params.bandwidth,
                "downtime-limit": params.downtime_limit_ms,
            },
        )
        self._migration_event.clear()
        self._migration_started = self.clock.now()
        await self.execute("migrate", {"uri": uri})

    async def start_postcopy(self) -> None:
        await self.execute("migrate-start-postcopy")

    async def resume_migration(self, uri: str) -> None:
        self._migration_event.clear()
        await self.execute("migrate", {"uri": uri, "resume": True})

    async def pause_migration(self) -> None:
        await self.execute("migrate-pause")

    async def recover_incoming(self, uri: str) -> str:
        await self.execute("migrate-recover", {"uri": uri})
        return await self._listening(uri)

    async def cancel_migration(self) -> None:
        await self.execute("migrate_cancel")

    async def pause(self) -> None:
        await self.execute("stop")

    async def resume(self) -> None:
        await self.execute("cont")

    async def is_running(self) -> bool:
        status = await self.execute("query-status")
        return bool(status["running"])

    async def run_state(self) -> str:
        status = await self.execute("query-status")
        return str(status["status"])

    async def wait_change(self, clock: Clock, within: float) -> None:
        with contextlib.suppress(TimeoutError):
            await clock.wait_for(self._migration_event.wait(), within)
        self._migration_event.clear()

    async def stats(self) -> TransferStats:
        info = await self.execute("query-migrate")
        status = TransferStatus(info.get("status", "none"))
        ram = info.get("ram", {})
        page = int(ram.get("page-size", testguest.PAGE)) or testguest.PAGE
        started = self._migration_started
        return TransferStats(
            status=status,
            total_bytes=int(ram.get("total", 0)),
            processed_bytes=int(ram.get("transferred", 0)),
            remaining_bytes=int(ram.get("remaining", 0)),
            dirty_rate=float(ram.get("dirty-pages-rate", 0)) * page,
            transfer_rate=float(ram.get("mbps", 0.0)) * 1e6 / 8,
            iteration=int(ram.get("dirty-sync-count", 0)),
            downtime_ms=info.get("downtime"),
            error=info.get("error-desc"),
            elapsed=self.clock.now() - started if started is not None else 0.0,
        )

    # --- the test guest ----------------------------------------------------------------------

    async def _send_console(self, data: bytes) -> None:
        if self._serial_writer is None:
            raise HypervisorError(f"{self.name}: no serial console")
        self._serial_writer.write(data)
        await self._serial_writer.drain()

    async def set_dirty_rate(self, rate: int) -> None:
        """Change the test guest's dirty rate (bytes/s) while it runs."""
        await self._send_console(testguest.rate_command(rate))
        await self.wait_console(f"R{testguest.pages(rate)} ")

    async def set_working_set(self, size: int) -> None:
        if size > testguest.max_working_set(self.spec.memory):
            raise HypervisorError(
                f"{self.name}: working set {size} does not fit in {self.spec.memory} bytes"
            )
        await self._send_console(testguest.working_set_command(size))
        await self.wait_console(f" W{testguest.pages(size)}")
        self.working_set = size

    async def read_counters(self) -> bytes:
        """The test guest's page counters (first byte of every working-set page), as is."""
        dump = self.folder / "memory.bin"
        try:
            await self.execute(
                "pmemsave",
                {
                    "val": testguest.WORKING_SET_BASE,
                    "size": testguest.pages(self.working_set) * testguest.PAGE,
                    "filename": str(dump),
                },
            )
            return dump.read_bytes()[:: testguest.PAGE]
        finally:
            dump.unlink(missing_ok=True)

    async def measure_dirty_rate(self, seconds: float) -> float:
        """Bytes/s the test guest really dirties: pages whose counter changed, per second.

        Exact while ``seconds`` is short enough that no page is dirtied twice (the sweep does
        not lap the working set)."""

        async def read() -> tuple[bytes, float]:
            started = self.clock.now()
            counters = await self.read_counters()
            return counters, (started + self.clock.now()) / 2  # a dump is not instantaneous

        before, t0 = await read()
        await self.clock.sleep(seconds)
        after, t1 = await read()
        changed = sum(1 for a, b in zip(before, after, strict=True) if a != b)
        return changed * testguest.PAGE / (t1 - t0)

    async def check_memory(self) -> MemoryCheck:
        """Pause, read every working-set page's counter, check the sweep pattern, resume."""
        was_running = await self.is_running()
        if was_running:
            await self.pause()
        try:
            return testguest.check_pattern(await self.read_counters())
        finally:
            if was_running:
                await self.resume()


class QemuHypervisor:
    """Starts QEMU VMs, each in its own folder under ``state_dir``."""

    def __init__(
        self,
        state_dir: Path,
        binary: str = QEMU_BINARY,
        accel: str | None = None,
        clock: Clock | None = None,
        disk_root: Path | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.disk_root = disk_root
        self.binary = shutil.which(binary) or binary
        self.clock = clock or RealClock()
        self._accel = accel

    async def accel(self) -> str:
        """``kvm`` or ``tcg``: $LIVEMIG_ACCEL if set, else what a probe guest shows works."""
        if self._accel is None:
            self._accel = os.environ.get("LIVEMIG_ACCEL") or None
        if self._accel is None:
            self._accel = "kvm" if await kvm_works(self.binary, self.state_dir) else "tcg"
            log.info("QEMU accelerator: %s", self._accel)
        return self._accel

    async def _vm(self, spec: VMSpec, incoming: bool) -> QemuVM:
        if spec.disk is None and spec.working_set > testguest.max_working_set(spec.memory):
            raise HypervisorError(
                f"VM {spec.name}: working set {spec.working_set} bytes does not fit in "
                f"{spec.memory} bytes of memory (at most {testguest.max_working_set(spec.memory)})"
            )
        vm = QemuVM(spec, Path(self.handle_for(spec, incoming)), self.clock, self.disk_root)
        try:
            await vm.launch(self.binary, await self.accel(), incoming)
        except BaseException:
            await _abandon(vm)
            raise
        return vm

    async def reap(self, keep: Collection[str]) -> list[str]:
        """Stop every QEMU under this hypervisor's folder whose handle is not in ``keep``: a
        QEMU nobody manages (its agent died before recording it, or forgot it) is a VM
        running twice or a leak. Returns what was stopped, for the log."""
        stopped = []
        for pid, folder in qemu_folders().items():
            if folder.parent != self.state_dir or str(folder) in keep:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                stopped.append(f"QEMU pid {pid} ({folder.name})")
        return stopped

    def handle_for(self, spec: VMSpec, incoming: bool = False) -> str:
        """Where ``spec``'s QEMU lives (its folder), known before it starts, so a ledger can
        record a VM before it exists and find it again after a crash."""
        return str(self.state_dir / vm_folder_name(spec.name, ".incoming" if incoming else ""))

    async def attach(self, spec: VMSpec, handle: str) -> QemuVM:
        """Take over the QEMU at ``handle`` (an agent restarting); HypervisorError if gone."""
        return await QemuVM.attach(spec, Path(handle), self.clock)

    async def start_vm(self, spec: VMSpec) -> QemuVM:
        """Boot a VM; for the test guest, return once it has written its working set."""
        vm = await self._vm(spec, incoming=False)
        try:
            await vm.resume()  # started stopped (-S): QMP and the console listen already
            if spec.disk is None:
                await vm.wait_console("READY")
        except BaseException:
            await _abandon(vm)
            raise
        return vm

    async def start_incoming(self, spec: VMSpec, uri: str, params: MigrationParams) -> QemuVM:
        """A VM waiting for a migration on ``uri`` (``tcp:HOST:0`` picks a free port)."""
        vm = await self._vm(spec, incoming=True)
        try:
            await vm.set_capabilities(params)
            vm.listen_uri = await vm.listen(uri)
        except BaseException:
            await _abandon(vm)
            raise
        return vm


async def _abandon(vm: QemuVM) -> None:
    """A VM that did not finish starting: kill it at once — before anything is awaited, so a
    cancel (an agent shutting down) cannot leave it running — then release what it held."""
    vm.kill()
    await vm.stop()


#: How much of a VM's name its folder name keeps, for people looking around; the rest is a hash.
_NAME_PREFIX = 40


def vm_folder_name(name: str, suffix: str = "") -> str:
    """A VM's folder name, of bounded length whatever the VM's name (names may be 253
    characters, more than a file name can hold); the full name is in the folder's ``name``."""
    digest = hashlib.sha256(f"{name}{suffix}".encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{name[:_NAME_PREFIX]}-{digest}{suffix}"


def check_private_folder(folder: Path) -> None:
    """Refuse a socket folder someone else could have prepared: it must be a real folder (not
    a symlink), ours, and closed to others (e.g. a /tmp stand-in made by another user)."""
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise HypervisorError(
            f"socket folder {folder} is not a private folder of this user (owner uid "
            f"{info.st_uid}, mode {stat.S_IMODE(info.st_mode):o}); refusing to use it: remove it"
        )


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def kvm_works(binary: str, scratch: Path) -> bool:
    """Whether a guest really boots under KVM here (seen failing with /dev/kvm present)."""
    if binary in _kvm_verdict:
        return _kvm_verdict[binary]
    verdict = False
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        probe = QemuVM(
            VMSpec(name="kvm-probe", memory=16 * 2**20, working_set=2**20),
            scratch / "kvm-probe",
            RealClock(),
        )
        try:
            await probe.launch(binary, "kvm", incoming=False)
            await probe.resume()
            # A heartbeat proves the timer interrupt works too: here KVM was seen to boot,
            # print, and then stop with an internal error at the first interrupt.
            for _ in range(25):
                with contextlib.suppress(HypervisorError):
                    await probe.wait_console("H", within=0.2)
                    verdict = True
                    break
                if await probe.run_state() != "running":
                    break
        except HypervisorError:
            verdict = False
        finally:
            probe.kill()  # at once: a cancel landing in the stop below must not leave it
            await probe.stop()
            shutil.rmtree(probe.folder, ignore_errors=True)
    _kvm_verdict[binary] = verdict
    return verdict
