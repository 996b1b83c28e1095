"""The test guest's image parameters and the memory-pattern check."""

import shutil
import struct
import subprocess

import pytest

from livemig.hypervisor import testguest
from livemig.hypervisor.testguest import check_pattern

from ..conftest import REPO


def test_parameters_are_patched_in_pages() -> None:
    img = testguest.image(working_set=64 * 2**20, dirty_rate=10 * 2**20)
    assert struct.unpack_from("<4sII", img, testguest.PARAMS_OFFSET) == (b"LMGP", 16384, 2560)
    assert img[510:512] == b"\x55\xaa"


@pytest.mark.parametrize(
    ("counters", "bad"),
    [
        (bytes([7] * 10), 0),  # all equal: the sweep is at page 0
        (bytes([8] * 3 + [7] * 7), 0),  # one step down by one
        (bytes([0] * 3 + [255] * 7), 0),  # wraps mod 256
        (bytes([8] * 3 + [7] * 3 + [8] + [7] * 3), 1),  # a stale page ahead of the sweep
        (bytes([8] * 3 + [6] + [7] * 6), 1),  # a page two behind
        (bytes([8] * 3 + [0] + [7] * 6), 1),  # a lost page (zero)
        (bytes([0] + [8] * 9), 1),  # the very first page lost is still one bad page
        (bytes([8] * 5 + [6] * 5), 5),  # a step of two is not a sweep
    ],
)
def test_memory_pattern_check(counters: bytes, bad: int) -> None:
    result = check_pattern(counters)
    assert (result.pages, result.bad_pages) == (len(counters), bad)
    assert result.ok is (bad == 0)


@pytest.mark.skipif(
    not all(shutil.which(t) for t in ("as", "ld", "objcopy", "make")),
    reason="binutils and make are needed to rebuild the guest",
)
def test_rebuilding_the_guest_from_source_gives_the_committed_image() -> None:
    proc = subprocess.run(
        ["make", "-s", "check"],
        cwd=REPO / "guest",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
