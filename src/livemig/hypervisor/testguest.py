"""The built-in test guest: its image, its parameters, and the check of its memory pattern.

See ``guest/guest.S`` for the guest itself. The working set starts at 1 MiB of guest-physical
memory; page i's first byte is its counter.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from importlib import resources

from livemig.hypervisor import MemoryCheck

PAGE = 4096
WORKING_SET_BASE = 0x100000
PARAMS_OFFSET = 0x200
MAGIC = b"LMGP"
#: QEMU's virtio-blk wants more than a few sectors; the image is padded (sparse) to this.
IMAGE_SIZE = 2**20
#: Guest memory below the working set (real-mode area, code, stack) plus some slack.
RESERVED = 2 * 2**20
IMAGE_NAME = "test-guest.img"


def base_image() -> bytes:
    return resources.files("livemig.hypervisor").joinpath(IMAGE_NAME).read_bytes()


def pages(nbytes: int) -> int:
    """Whole pages covering ``nbytes``."""
    return math.ceil(nbytes / PAGE)


def max_working_set(memory: int) -> int:
    return max(0, memory - WORKING_SET_BASE - RESERVED)


def image(working_set: int, dirty_rate: int) -> bytes:
    """The test guest with its parameters: working set in bytes, dirty rate in bytes/s."""
    img = bytearray(base_image())
    if img[PARAMS_OFFSET : PARAMS_OFFSET + 4] != MAGIC:
        raise RuntimeError(f"{IMAGE_NAME} has no parameter block at {PARAMS_OFFSET:#x}")
    struct.pack_into("<II", img, PARAMS_OFFSET + 4, pages(working_set), pages(dirty_rate))
    return bytes(img)


def rate_command(dirty_rate: int) -> bytes:
    return f"R{pages(dirty_rate)}\n".encode()


def working_set_command(working_set: int) -> bytes:
    return f"W{pages(working_set)}\n".encode()


def check_pattern(counters: bytes) -> MemoryCheck:
    """Check page counters (one byte per page, in order) against the sweep pattern.

    A consistent memory reads hi...hi lo...lo with lo = hi - 1 (mod 256): the sweep has
    incremented the pages before its cursor once more than those after. Any page that does
    not fit the best such split is bad.
    """
    n = len(counters)
    if n == 0:
        return MemoryCheck(0, 0)
    common = Counter(counters).most_common(1)[0][0]
    best: tuple[int, int, int, int] | None = None  # (bad, first_bad, hi, lo)
    for hi in (common, (common + 1) % 256):
        lo = (hi - 1) % 256
        # bad(k) = #(counters[:k] != hi) + #(counters[k:] != lo), minimised over k.
        not_lo_total = sum(1 for v in counters if v != lo)
        bad_here = not_lo_total
        best_k, best_bad = 0, bad_here
        for k, v in enumerate(counters, start=1):
            bad_here += (v != hi) - (v != lo)
            if bad_here < best_bad:
                best_k, best_bad = k, bad_here
        if best is None or best_bad < best[0]:
            first = next(
                (i for i, v in enumerate(counters) if v != (hi if i < best_k else lo)), None
            )
            best = (best_bad, first if first is not None else -1, hi, lo)
    assert best is not None
    bad, first, hi, lo = best
    return MemoryCheck(n, bad, first if bad else None, (hi, lo))
