"""The scratch directory of a build: one left by a killed process of this host is removed by the next build."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from slurm_factory.builder import _scratch_directory


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_a_dead_process_scratch_is_removed_and_a_live_or_foreign_one_is_kept(tmp_path: Path) -> None:
    host = socket.gethostname()
    dead = tmp_path / f".scratch-{_dead_pid()}@{host}-abc123"
    alive = tmp_path / f".scratch-{os.getppid()}@{host}-def456"
    foreign = tmp_path / f".scratch-{_dead_pid()}@another-host-ghi789"
    for directory in (dead, alive, foreign):
        (directory / "tree").mkdir(parents=True)

    with _scratch_directory(tmp_path) as scratch:
        assert Path(scratch).name.startswith(f".scratch-{os.getpid()}@{host}-")
        assert not dead.exists() and alive.is_dir() and foreign.is_dir()
    assert not Path(scratch).exists()
