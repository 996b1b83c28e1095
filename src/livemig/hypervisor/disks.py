"""Which host files a VM may use as its disk, and handing them to QEMU safely.

A ``hostDisk`` path comes from whoever can write a VirtualMachine. The agent confines it to the
folder it was given (``--disk-root``): the path, after resolving symlinks and ``..``, must lie
inside that folder and be a regular file. QEMU then gets an already-open file descriptor (an
``-add-fd`` fd set) described by ``-blockdev`` JSON, so no path reaches QEMU's option parser
(no ``,file=…`` injection) and nothing but a local file can be opened (no ``nbd:``, ``http:``,
``/dev/…``), even if the path is swapped for a symlink between the check and the start.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from livemig.errors import InvalidInput


class DiskRefused(InvalidInput):
    """A hostDisk path outside the allowed root, or not a regular file."""


def confine(path: str, root: Path) -> Path:
    """The real path of ``path`` (relative paths are inside ``root``), or DiskRefused."""
    real_root = Path(os.path.realpath(root))
    if "\0" in path or not path:
        raise DiskRefused(f"hostDisk path {path!r} is not a file name")
    candidate = Path(path) if os.path.isabs(path) else real_root / path
    real = Path(os.path.realpath(candidate))
    if real != real_root and real_root not in real.parents:
        raise DiskRefused(
            f"hostDisk path {path} resolves to {real}, outside the allowed root {real_root} "
            "(the agent's --disk-root): put the image there"
        )
    try:
        mode = real.stat().st_mode
    except OSError as exc:
        raise DiskRefused(
            f"hostDisk path {path} cannot be used: {exc.strerror} (allowed root: {real_root})"
        ) from None
    if not stat.S_ISREG(mode):
        raise DiskRefused(
            f"hostDisk path {path} is not a regular file (allowed root: {real_root}); a disk "
            "must be an image file"
        )
    return real


def open_confined(path: str, root: Path | None) -> int:
    """An O_RDONLY descriptor of the disk image (checked again on the open file itself)."""
    real = confine(path, root) if root is not None else Path(path)
    fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DiskRefused(f"hostDisk path {path} is not a regular file")
        if root is not None:
            opened = Path(os.readlink(f"/proc/self/fd/{fd}"))
            real_root = Path(os.path.realpath(root))
            if real_root not in opened.parents:
                raise DiskRefused(
                    f"hostDisk path {path} changed to {opened} while it was opened; refused"
                )
    except BaseException:
        os.close(fd)
        raise
    return fd


def blockdev(fdset: int) -> str:
    """``-blockdev`` JSON for a read-only raw image in fd set ``fdset``."""
    return (
        '{"driver":"raw","node-name":"disk0","read-only":true,'
        f'"file":{{"driver":"file","filename":"/dev/fdset/{fdset}","read-only":true}}}}'
    )
