"""The QEMU processes on this machine, read from /proc: the one place livemig looks for them by
command line (the driver to adopt or reap, ``livemig.audit`` to check). No QMP here."""

from __future__ import annotations

from pathlib import Path


def qemu_commands() -> dict[int, list[bytes]]:
    """pid → argv of every QEMU process on this machine."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"qemu-system" in args[0]:
            found[int(proc.name)] = args
    return found


def qemu_folders() -> dict[int, Path]:
    """pid → VM folder (its ``-pidfile``'s folder) of every livemig QEMU on this machine."""
    found = {}
    for pid, args in qemu_commands().items():
        if b"-pidfile" in args:
            pidfile = args[args.index(b"-pidfile") + 1].decode(errors="replace")
            found[pid] = Path(pidfile).parent
    return found
