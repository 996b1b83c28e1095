"""Host safety with real files and real QEMU: disks confined to the agent's root and handed to
QEMU as descriptors (no option injection), sockets only in private folders, and an adopted PID
killed only while it still is that VM's QEMU."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import pytest

from livemig.audit import qemu_processes
from livemig.clock import RealClock
from livemig.errors import HypervisorError
from livemig.hypervisor import VMSpec, testguest
from livemig.hypervisor.disks import DiskRefused, confine
from livemig.hypervisor.qemu import QemuHypervisor, QemuVM, check_private_folder
from livemig.tasks import cancel_and_wait

from .conftest import MiB, requires_qemu


def image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(testguest.image(working_set=MiB, dirty_rate=0))
    os.truncate(path, testguest.IMAGE_SIZE)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    disks = tmp_path / "disks"
    image(disks / "good.img")
    image(disks / "sub" / "also.img")
    (tmp_path / "outside.img").write_bytes(b"secret")
    (disks / "link-out.img").symlink_to(tmp_path / "outside.img")
    (disks / "link-in.img").symlink_to(disks / "good.img")
    (disks / "a-folder").mkdir()
    os.mkfifo(disks / "a-fifo")
    return disks


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/etc/passwd", "outside the allowed root"),
        ("../outside.img", "outside the allowed root"),
        ("sub/../../outside.img", "outside the allowed root"),
        ("link-out.img", "outside the allowed root"),
        ("nbd:127.0.0.1:10809", "No such file or directory"),
        ("http://example.invalid/x.img", "No such file or directory"),
        ("a-folder", "not a regular file"),
        ("a-fifo", "not a regular file"),
        ("/dev/zero", "outside the allowed root"),
        ("missing.img", "No such file or directory"),
    ],
)
def test_disk_paths_outside_the_root_or_not_files_are_refused(
    root: Path, path: str, words: str
) -> None:
    with pytest.raises(DiskRefused) as info:
        confine(path, root)
    assert words in str(info.value)
    assert str(root) in str(info.value)  # the message names the allowed root


@pytest.mark.parametrize("path", ["good.img", "sub/also.img", "link-in.img"])
def test_disk_paths_inside_the_root_resolve(root: Path, path: str) -> None:
    assert confine(path, root).is_relative_to(root.resolve())
    assert confine(str(root / path), root) == confine(path, root)


def test_private_folders_are_checked(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    check_private_folder(mine)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(HypervisorError, match="not a private folder"):
        check_private_folder(shared)
    link = tmp_path / "link"
    link.symlink_to(mine)
    with pytest.raises(HypervisorError, match="not a private folder"):
        check_private_folder(link)


@requires_qemu
def test_a_disk_whose_name_carries_qemu_options_boots_that_file_only(tmp_path: Path) -> None:
    """A comma in a path once became a QEMU option; now QEMU never sees the path."""
    disks = tmp_path / "disks"
    tricky = image(disks / "x.img,file=,format=qcow2,readonly=off")

    def cmdline(pid: int | None) -> str:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode()

    async def go() -> tuple[str, str]:
        hv = QemuHypervisor(tmp_path / "vms", disk_root=disks)
        vm = await hv.start_vm(VMSpec("tricky", memory=64 * MiB, disk=str(tricky)))
        try:
            return await vm.wait_console("READY"), cmdline(vm.pid)
        finally:
            await vm.stop()

    ready, args = asyncio.run(go())
    assert ready == "READY"
    assert "/dev/fdset/1" in args and str(disks) not in args


@requires_qemu
def test_a_disk_swapped_for_a_symlink_outside_after_the_check_is_refused(tmp_path: Path) -> None:
    disks = tmp_path / "disks"
    disks.mkdir()
    (tmp_path / "secret.img").write_bytes(b"x" * 512)
    (disks / "swapped.img").symlink_to(tmp_path / "secret.img")

    async def go() -> None:
        hv = QemuHypervisor(tmp_path / "vms", disk_root=disks)
        # The path is as the agent recorded it before the swap; the open checks again.
        await hv.start_vm(VMSpec("swap", memory=64 * MiB, disk=str(disks / "swapped.img")))

    with pytest.raises(DiskRefused, match="outside the allowed root"):
        asyncio.run(go())


def test_a_recycled_pid_is_neither_adopted_nor_killed(tmp_path: Path) -> None:
    """The ledger says QEMU ran as PID N; N is now some other process: leave it alone."""
    other = subprocess.Popen(["sleep", "60"])
    try:
        folder = tmp_path / "vm"
        folder.mkdir(mode=0o700)
        (folder / "pid").write_text(str(other.pid))
        vm = QemuVM(VMSpec("gone", memory=64 * MiB), folder, RealClock())
        vm._adopted_pid = other.pid
        with pytest.raises(HypervisorError, match="is gone"):
            asyncio.run(QemuVM.attach(VMSpec("gone", memory=64 * MiB), folder, RealClock()))
        vm.kill()
        asyncio.run(vm.stop())
        assert other.poll() is None, "livemig killed a process that was not its QEMU"
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize("warm", [False, True], ids=["first-start", "later-start"])
@pytest.mark.parametrize("after", [0.01, 0.03, 0.06, 0.1])
def test_a_vm_start_cancelled_over_and_over_leaves_no_qemu(
    tmp_path: Path, after: float, warm: bool
) -> None:
    """An agent shutting down cancels its tasks again every half second (cancel_and_wait); a
    QEMU being started then must not be left running (seen as a leak in the e2e suite). The
    first start also probes KVM with a QEMU of its own."""

    async def go() -> list[int]:
        hv = QemuHypervisor(tmp_path / "vms")
        if warm:
            await (await hv.start_vm(VMSpec("before", memory=64 * MiB))).stop()
        task = asyncio.create_task(hv.start_vm(VMSpec("cancelled", memory=64 * MiB)))
        await asyncio.sleep(after)
        await cancel_and_wait(task)
        if not task.cancelled() and task.exception() is None:
            await task.result().stop()  # the start won the race: its VM is ours to stop
        return list(qemu_processes(tmp_path))

    left = asyncio.run(go())
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == []
