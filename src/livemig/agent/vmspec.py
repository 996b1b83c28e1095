"""How a VMI runs here: its QEMU spec (the test guest or a confined hostDisk) and the test
guest's load from the VMI's annotations."""

from __future__ import annotations

from pathlib import Path

from livemig.api.builders import DIRTY_RATE, TEST_GUEST_IMAGE, WORKING_SET
from livemig.api.models import VirtualMachineInstance
from livemig.api.quantity import parse_quantity, short_bytes
from livemig.errors import HypervisorError, InvalidInput, QuantityError
from livemig.hypervisor import VMSpec, testguest
from livemig.hypervisor.disks import DiskRefused, confine

DEFAULT_MEMORY = 128 * 2**20


def vm_spec(vmi: VirtualMachineInstance, annotations: dict[str, str], disk_root: Path) -> VMSpec:
    """How to run a VMI: the test guest (containerDisk livemig/test-guest) or a hostDisk, which
    must be a regular file inside ``disk_root`` (DiskRefused names the path and the root)."""
    memory = vmi.spec.memory_bytes() or DEFAULT_MEMORY
    cpu = vmi.spec.domain.cpu if vmi.spec.domain else None
    vcpus = cpu.vcpus if cpu else 1
    name = f"{vmi.namespace}_{vmi.name}"
    for volume in vmi.spec.volumes:
        if volume.host_disk is not None:
            try:
                disk = confine(volume.host_disk.path, disk_root)
            except DiskRefused as exc:
                raise DiskRefused(f"volume {volume.name}: {exc}") from None
            return VMSpec(name, memory, vcpus, disk=str(disk))
        if volume.container_disk is not None and volume.container_disk.image == TEST_GUEST_IMAGE:
            rate, ws = guest_load(annotations, memory)
            return VMSpec(name, memory, vcpus, dirty_rate=rate, working_set=ws)
    raise HypervisorError(
        f"{vmi.ref}: no bootable volume: give a hostDisk volume (a path every node can read) "
        f"or a containerDisk with image {TEST_GUEST_IMAGE}"
    )


#: The test guest counts pages per second in 32 bits; far beyond any real dirty rate anyway.
MAX_DIRTY_RATE = 64 * 2**30


def guest_load(annotations: dict[str, str], memory: int) -> tuple[int, int]:
    """(dirty rate, working set) in bytes from the VMI's annotations; InvalidInput naming the
    annotation when one is not a usable quantity."""
    default_ws = min(64 * 2**20, testguest.max_working_set(memory))
    rate = _load_annotation(annotations, DIRTY_RATE, "0", MAX_DIRTY_RATE)
    ws = _load_annotation(annotations, WORKING_SET, str(default_ws), None)
    return rate, min(ws, testguest.max_working_set(memory))


def _load_annotation(annotations: dict[str, str], key: str, default: str, limit: int | None) -> int:
    raw = annotations.get(key, default)
    try:
        value = parse_quantity(raw).to_bytes()
    except QuantityError as exc:
        raise InvalidInput(f"annotation {key}: {exc}") from exc
    if value < 0:
        raise InvalidInput(f"annotation {key}: {raw!r} is negative")
    if limit is not None and value > limit:
        raise InvalidInput(f"annotation {key}: {raw!r} is above {short_bytes(limit)}")
    return value
