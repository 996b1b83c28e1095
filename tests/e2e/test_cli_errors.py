"""Errors reach users as one line each, never a traceback: the `livemig` command run as its own
process, as a user runs it."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

LIVEMIG = str(Path(sys.executable).parent / "livemig")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LIVEMIG, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_line_errors(run: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in run.stderr + run.stdout
    lines = run.stderr.strip().splitlines()
    assert lines, "no error message"
    return lines


def test_apply_of_a_bad_file_prints_each_problem_on_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: migrations.kubevirt.io/v1alpha1\nkind: MigrationPolicy\n"
        "metadata: {name: fast}\nspec:\n  selectors: {}\n  bandwidthPerMigration: 64Mb\n"
        "  allowPostcopy: true\n"
    )
    run = cli("apply", "-f", str(bad), env={"LIVEMIG_STATE": str(tmp_path / "none")})
    assert run.returncode == 1
    assert one_line_errors(run) == [
        f"error: {bad}:6: MigrationPolicy/fast: spec.bandwidthPerMigration: '64Mb' is not a "
        "quantity (did you mean 64Mi?)",
        f"error: {bad}:7: MigrationPolicy/fast: spec.allowPostcopy: unknown field "
        '"allowPostcopy" (did you mean allowPostCopy?)',
        "2 problems found; nothing was applied.",
    ]


def test_apply_of_a_duplicate_object_names_both_places(tmp_path: Path) -> None:
    ok = tmp_path / "p.yaml"
    ok.write_text(
        "apiVersion: migrations.kubevirt.io/v1alpha1\nkind: MigrationPolicy\n"
        "metadata: {name: fast}\nspec: {selectors: {}}\n"
    )
    run = cli("apply", "-f", str(ok), "-f", str(ok), env={"LIVEMIG_STATE": str(tmp_path)})
    assert run.returncode == 1
    assert "MigrationPolicy/fast: defined twice" in one_line_errors(run)[0]


def test_a_stale_endpoint_says_no_server_is_running(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "endpoint.json").write_text(json.dumps({"url": f"http://127.0.0.1:{port}"}))
    (tmp_path / "token").write_text("t\n")
    run = cli("get", "vms", env={"LIVEMIG_STATE": str(tmp_path)})
    assert run.returncode == 1
    (line,) = one_line_errors(run)
    assert line.startswith(f"error: no livemig server at http://127.0.0.1:{port}/: is `livemig up`")


def test_a_busy_port_is_one_line_and_a_missing_state_folder_is_created(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        state = tmp_path / "new" / "state"
        run = cli("server", "--state", str(state), "--port", str(port), "--no-controller")
    assert run.returncode == 1
    (line,) = one_line_errors(run)
    assert line == (
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use (another livemig "
        "server? stop it or choose another --port)"
    )
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_server_creates_its_state_folder_private_and_serves(tmp_path: Path) -> None:
    state = tmp_path / "does" / "not" / "exist"
    server = subprocess.Popen(
        [LIVEMIG, "server", "--state", str(state), "--port", "0", "--no-controller"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not (state / "endpoint.json").exists():
            assert server.poll() is None, "livemig server exited"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        for private in ("token", "livemig.db"):
            assert stat.S_IMODE((state / private).stat().st_mode) == 0o600
        listed = cli("get", "vms", env={"LIVEMIG_STATE": str(state)})
        assert listed.returncode == 0, listed.stderr
    finally:
        server.terminate()
        server.wait(30)


@pytest.mark.parametrize("command", [["demo"], ["up"], ["agent", "--node", "n1"]])
def test_without_qemu_the_commands_that_run_vms_say_how_to_install_it(
    tmp_path: Path, command: list[str]
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    run = cli(*command, env={"PATH": str(empty), "LIVEMIG_STATE": str(tmp_path / "s")})
    assert run.returncode == 1
    (line,) = one_line_errors(run)
    assert line.startswith("error: QEMU is not installed (qemu-system-x86_64 is not on PATH)")
    assert "apt-get install qemu-system-x86" in line


def test_version() -> None:
    run = cli("--version")
    assert run.returncode == 0 and run.stdout.startswith("livemig 0.")
