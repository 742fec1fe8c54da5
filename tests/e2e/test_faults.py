"""Faults during a real build: SIGTERM mid-compile and Ctrl-C (SIGINT) leave no container, network, temporary
keyring or partial file behind, and the next build of the same request succeeds.

Everything runs in one home and one project: two interrupted signed builds, then the same request twice at once
(one builds, the other waits for it and reuses the artifact; the log of the build stays whole).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from tests import testenv
from tests.conftest import slurm_source_tarball
from tests.e2e.helpers import cli_environment, make_throwaway_key, remove_project, report_measurement
from tests.e2e.shared_builds import seed_ccache

pytestmark = [pytest.mark.docker, pytest.mark.e2e]

EXIT_INTERRUPTED = 130
TESTENV = Path(__file__).resolve().parents[2] / "scripts" / "testenv"
COMPILE_MARKER = "checking for"  # configure has started inside the build container


def _build_command(source: Path, key_arguments: list[str], mirror: Path) -> list[str]:
    return [
        sys.executable, "-m", "slurm_factory", "build-slurm", "--engine", "native", "--toolchain", "trixie",
        "--slurm-version", "24.11.5", "--slurm-source", str(source), "--json",
        *key_arguments, "--publish", "slurm", "--publish-url", mirror.as_uri(),
    ]  # fmt: skip


def _leftovers(client: docker.DockerClient, project: str, home: Path, tmp: Path) -> dict[str, list[str]]:
    label = {"label": f"org.slurm-factory.project={project}"}
    builds = home / "builds"
    return {
        "containers": [c.name for c in client.containers.list(all=True, filters=label)],
        "networks": [n.name for n in client.networks.list(filters=label)],
        "keyrings and temporary files": sorted(p.name for p in tmp.iterdir()),
        "partial files in builds/": sorted(p.name for p in builds.iterdir()) if builds.is_dir() else [],
    }


def _wait_for_compile(process: subprocess.Popen[str], log_dir: Path, deadline: float, started: float) -> None:
    """Until the build container runs configure (its output reaches this build's log, which the build truncated
    when it started: the same request writes the same log)."""
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the build ended before the fault: {process.communicate()}"
        logs = [log for log in log_dir.glob("*.log") if log.stat().st_mtime >= started] if log_dir.is_dir() else []
        if any(COMPILE_MARKER in log.read_text(encoding="utf-8", errors="replace") for log in logs):
            return
        time.sleep(1)
    pytest.fail("the build did not reach configure in time")


def _interrupt_mid_compile(
    command: list[str], environment: dict[str, str], home: Path, signal_number: signal.Signals
) -> tuple[int, str]:
    started = time.time()
    process = subprocess.Popen(command, env=environment, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for_compile(process, home / "logs", time.monotonic() + 900, started)
        interrupted = time.monotonic()
        process.send_signal(signal_number)
        _, stderr = process.communicate(timeout=900)  # removing a compiling container can be slow on a busy host
        report_measurement(
            f"{signal_number.name} mid-compile: the CLI exited {time.monotonic() - interrupted:.1f}s later"
        )
        return process.returncode, stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@dataclass(frozen=True)
class FaultRun:
    """A signed native build publishing to a file:// mirror, in its own home, project and temporary directory."""

    home: Path
    mirror: Path
    tmp: Path
    project: str
    environment: dict[str, str]
    command: list[str]


@pytest.fixture
def run(tmp_path: Path, warm_ccache: Path) -> Iterator[FaultRun]:
    """The home's ccache is a copy of the e2e build's: the faults strike at configure, and the build that then
    runs to the end need not compile cold (the cold compile is the e2e build's test)."""
    home, mirror = tmp_path / "home", tmp_path / "mirror"
    seed_ccache(home, warm_ccache)
    # gpg-agent's socket lives in the temporary GnuPG home: its path must stay under the 108-byte socket limit.
    tmp = Path(tempfile.mkdtemp(prefix="sf-fault-"))
    key = make_throwaway_key(tmp_path)
    key_arguments = ["--signing-key", key.fingerprint, "--gpg-private-key", f"@{key.key_file}",
                     "--gpg-passphrase-file", str(key.passphrase_file)]  # fmt: skip
    project = f"sf-fault-{uuid.uuid4().hex[:8]}"
    environment = cli_environment(home, project, {"TMPDIR": str(tmp)})
    yield FaultRun(
        home, mirror, tmp, project, environment, _build_command(slurm_source_tarball(), key_arguments, mirror)
    )
    shutil.rmtree(tmp, ignore_errors=True)


def test_interrupted_builds_leave_nothing_behind_and_the_same_request_then_builds(
    docker_client: docker.DockerClient, run: FaultRun
) -> None:
    """SIGTERM (CI cancelling, `timeout`) and SIGINT (Ctrl-C) while the build container compiles, each in a signed
    build publishing to a file:// mirror; then the same request in the same home builds to the end."""
    home, mirror, tmp, project = run.home, run.mirror, run.tmp, run.project
    environment, command = run.environment, run.command
    try:
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            code, stderr = _interrupt_mid_compile(command, environment, home, signal_number)

            assert code == EXIT_INTERRUPTED, stderr
            assert stderr.strip().splitlines()[-1] == "interrupted; the 1 container(s) of this run were removed"
            assert "Traceback" not in stderr
            leftovers = _leftovers(docker_client, project, home, tmp)
            assert leftovers == {what: [] for what in leftovers}, (signal_number.name, leftovers)
            assert not mirror.exists() or not any(mirror.iterdir())

        # The same request twice at once in the same home: one builds, the other waits for it and reuses its artifact.
        started = time.monotonic()
        runs = [
            subprocess.Popen(command, env=environment, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(2)
        ]
        outputs = [run.communicate(timeout=3600) for run in runs]
        report_measurement(
            f"the same request twice at once after two interrupted builds: {time.monotonic() - started:.0f}s"
        )

        assert [run.returncode for run in runs] == [0, 0], [stderr[-3000:] for _, stderr in outputs]
        results = [json.loads(stdout) for stdout, _ in outputs]
        assert sorted(result["reused"] for result in results) == [False, True]
        assert results[0]["sha256"] == results[1]["sha256"]
        built = next(result for result in results if not result["reused"])
        log = Path(built["log"]).read_text(encoding="utf-8")
        assert log.count(f"build {built['build_id']}:") == 1 and f"sha256 {built['sha256']}" in log
        artifact = Path(built["artifact"])
        assert artifact.is_file() and all(result["signature"] is not None for result in results)
        assert (mirror / "trixie" / "24.11" / artifact.name).is_file()
        assert _leftovers(docker_client, project, home, tmp)["containers"] == []
    finally:
        remove_project(docker_client, project)


def test_a_docker_engine_killed_mid_compile_fails_in_one_line_and_the_next_build_removes_its_container(
    docker_client: docker.DockerClient, run: FaultRun
) -> None:
    if os.environ.get("SLURM_FACTORY_TEST_KILL_ENGINE") != "1":
        pytest.skip("kills and restarts the Docker engine: set SLURM_FACTORY_TEST_KILL_ENGINE=1 (local fault set)")
    pid = testenv.started_dockerd_pid()  # the only engine a test may kill and restart
    if pid is None:
        pytest.skip("the Docker engine was not started by scripts/testenv; a test kills only an engine it started")
    home, tmp, project = run.home, run.tmp, run.project
    environment, command = run.environment, run.command
    try:
        started = time.time()
        process = subprocess.Popen(command, env=environment, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _wait_for_compile(process, home / "logs", time.monotonic() + 900, started)
        os.kill(pid, signal.SIGKILL)
        _, stderr = process.communicate(timeout=300)
        restarted = subprocess.run([str(TESTENV), "up", "trixie"], capture_output=True, text=True, timeout=300)
        assert restarted.returncode == 0, restarted.stderr

        lines = stderr.strip().splitlines()
        assert process.returncode == 1, stderr
        assert lines[0].startswith("error: lost the Docker engine while "), stderr
        assert "Traceback" not in stderr
        assert sorted(p.name for p in tmp.iterdir()) == []  # no temporary keyring
        builds = home / "builds"
        assert not builds.is_dir() or sorted(p.name for p in builds.iterdir()) == []

        # The engine is back with the dead run's container; the next build of the project removes it first.
        code, stderr = _interrupt_mid_compile(command, environment, home, signal.SIGTERM)
        assert code == EXIT_INTERRUPTED, stderr
        assert _leftovers(docker_client, project, home, tmp)["containers"] == []
    finally:
        remove_project(docker.from_env(), project)
