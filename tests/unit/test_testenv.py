"""tests/testenv.py's state: where it lives, which pid files still name their daemon, what an engine name may be,
and its command line's usage errors (exit 2) — no engine is started here."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import testenv


def test_the_state_directory_follows_the_override_then_xdg_then_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SLURM_FACTORY_TESTENV_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert testenv.state_dir() == tmp_path / "home/.cache/slurm-factory-testenv"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert testenv.state_dir() == tmp_path / "xdg/slurm-factory-testenv"
    monkeypatch.setenv("SLURM_FACTORY_TESTENV_DIR", str(tmp_path / "explicit"))
    assert testenv.state_dir() == tmp_path / "explicit"
    assert testenv.extra_engine("w1").docker_host == f"unix://{tmp_path}/explicit/engines/w1/docker.sock"


def test_a_pid_file_counts_only_while_its_process_runs_and_is_the_named_command(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    # Popen can return before the kernel names the child after the program it executes (the close-on-exec pipe it
    # waits on closes first): wait for the name, as a pid file is read long after its daemon started.
    deadline = time.monotonic() + 10
    while Path(f"/proc/{sleeper.pid}/comm").read_text().strip() != "sleep" and time.monotonic() < deadline:
        time.sleep(0.01)
    pidfile = tmp_path / "sleep.pid"
    pidfile.write_text(f"{sleeper.pid}\n")
    try:
        assert testenv.live_pid(pidfile, "sleep") == sleeper.pid
        assert testenv.live_pid(pidfile, "dockerd") is None, "a reused pid of another program is not the daemon"
    finally:
        sleeper.kill()
        sleeper.wait()
    assert testenv.live_pid(pidfile, "sleep") is None, "a pid file outlives its process"
    pidfile.write_text("not a pid\n")
    assert testenv.live_pid(pidfile, "sleep") is None
    assert testenv.live_pid(tmp_path / "absent.pid", "sleep") is None


def test_a_zombie_is_not_alive() -> None:
    child = subprocess.Popen(["true"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped yet
    try:
        assert testenv.process_alive(child.pid) is False
    finally:
        child.wait()


@pytest.mark.parametrize("name", ["", "-w1", "w/1", "a" * 33, "w 1"])
def test_an_engine_name_that_could_leave_its_directory_or_break_a_socket_path_is_refused(name: str) -> None:
    with pytest.raises(testenv.TestenvError, match="an engine name is"):
        testenv.extra_engine(name)


def test_the_started_engine_is_the_one_in_the_state_directory_only_while_it_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SLURM_FACTORY_TESTENV_DIR", str(tmp_path))
    assert testenv.started_dockerd_pid() is None
    (tmp_path / "dockerd.pid").write_text(f"{os.getpid()}\n")  # alive, but this test is not dockerd
    assert testenv.started_dockerd_pid() is None


def test_mount_points_with_escaped_spaces_below_a_directory_are_listed_deepest_first(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 0:21 / / rw shared:1 - ext4 /dev/root rw\n"
        "30 22 0:4 / /e/w1/exec/netns/default rw - nsfs nsfs rw\n"
        "31 22 0:4 / /e/w1/exec/my\\040dir rw - tmpfs tmpfs rw\n"
        "32 22 0:4 / /e/w10/exec rw - tmpfs tmpfs rw\n"
    )
    assert testenv.mounts_below(Path("/e/w1"), mountinfo=mountinfo) == [
        Path("/e/w1/exec/netns/default"),
        Path("/e/w1/exec/my dir"),
    ]


@pytest.mark.parametrize(
    "argv",
    [[], ["engine"], ["engine-host"], ["engine-down", "w1", "--force"], ["engines-down", "x"], ["docker-up", "x"]],
)
def test_a_bad_command_line_is_a_usage_error(argv: list[str], tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.testenv", *argv],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SLURM_FACTORY_TESTENV_DIR": str(tmp_path)},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 2
    assert done.stderr.startswith("[testenv] usage: python3 -m tests.testenv docker-up")


def test_engine_host_names_the_socket_without_starting_anything(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.testenv", "engine-host", "w2"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "SLURM_FACTORY_TESTENV_DIR": str(tmp_path)},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.stdout == f"DOCKER_HOST=unix://{tmp_path}/engines/w2/docker.sock\n"
    assert not (tmp_path / "engines").exists()
