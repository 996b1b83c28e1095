"""The CLI against `livemig up` run as its own process: found without flags, real QEMU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .conftest import qemus_of, requires_qemu, vm

pytestmark = requires_qemu
LIVEMIG = str(Path(sys.executable).parent / "livemig")


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LIVEMIG, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_up_apply_get_migrate_and_stop_with_nothing_left(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {**os.environ, "LIVEMIG_STATE": str(state)}
    log = (tmp_path / "up.log").open("w")
    up = subprocess.Popen(
        [LIVEMIG, "up", "--nodes", "2"], env=env, stdout=log, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while not (state / "endpoint.json").exists():
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            assert time.monotonic() < deadline, "livemig up did not come up"
            time.sleep(0.1)
        manifest = tmp_path / "vm.yaml"
        manifest.write_text(yaml.safe_dump(vm("cli-vm", rate="1Mi")))
        applied = cli("apply", "-f", str(manifest), env=env)
        assert applied.returncode == 0, applied.stderr
        assert "VirtualMachine/default/cli-vm created" in applied.stdout
        deadline = time.monotonic() + 60
        while "Running" not in cli("get", "vmis", env=env).stdout:
            assert time.monotonic() < deadline, "the VMI never ran"
            time.sleep(0.3)
        moved = cli("migrate", "cli-vm", "--wait", env=env, timeout=120)
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert "Succeeded" in moved.stdout
        listed = json.loads(cli("get", "migrations", "-o", "json", env=env).stdout)
        item = listed if listed.get("kind") != "List" else listed["items"][0]
        assert item["status"]["phase"] == "Succeeded"
        assert item["status"]["migrationState"]["targetNode"] in ("node-1", "node-2")
        again = cli("apply", "-f", str(manifest), env=env)
        assert "VirtualMachine/default/cli-vm unchanged" in again.stdout
        nothing = cli("migrate-cancel", "cli-vm", env=env)
        assert nothing.returncode == 1 and "no unfinished migration" in nothing.stderr
        bad = cli(
            "get",
            "vmis",
            "--token",
            "wrong",
            "--server",
            json.loads((state / "endpoint.json").read_text())["url"],
            env=env,
        )
        assert bad.returncode == 1 and "token" in bad.stderr
        assert qemus_of(state)  # the VM is a real QEMU process
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=60)
        log.close()
    assert up.returncode == 0, (tmp_path / "up.log").read_text()
    assert not qemus_of(state)


def test_the_demo_drains_a_node_and_leaves_nothing_running(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    run = subprocess.run(
        [LIVEMIG, "demo", "--state", str(state)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "node-1 now runs no VM" in run.stdout
    assert run.stdout.count("Succeeded") >= 6
    assert "PostCopy" in run.stdout  # the heavy database VM, by its policy
    assert not qemus_of(state)
    if os.geteuid() == 0:  # as root the nodes are separate hosts with a migration network
        assert "over migration-network" in run.stdout
        namespaces = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=True
        ).stdout
        assert "livemig-" not in namespaces
