"""`build-matrix --scheduler` on a real local Dask cluster: a scheduler and two workers on 127.0.0.1, each worker with
its own Docker engine and home (tests/distributed/cluster.py).

- Two native cells (24.11.5 on trixie, `--gpu both`) build on the two workers at once; both artifacts come back into
  the requesting host's `builds/`, byte for byte what the workers stored.
- A worker killed outright in the middle of its cell's compile: the cell completes on the other worker, the dead
  worker's build container is removed from its engine, and its home holds no artifact (nothing half-written)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from slurm_factory import store
from slurm_factory.docker_engine import PROJECT_LABEL, ROLE_LABEL
from tests.conftest import slurm_source_tarball
from tests.distributed.cluster import DaskCluster, Engine
from tests.e2e.helpers import cli_environment, report_measurement

pytestmark = [pytest.mark.docker, pytest.mark.distributed, pytest.mark.e2e]

MATRIX_TIMEOUT = 3600
# How long the cell compiles on the first worker before that worker is killed.
KILL_AFTER = 30.0
NATIVE_TRIXIE = ("--engine", "native", "--toolchain", "trixie", "--slurm-version", "24.11.5")


def _matrix_command(cluster: DaskCluster, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "slurm_factory", "build-matrix", *NATIVE_TRIXIE,
        "--slurm-source", str(slurm_source_tarball()), "--scheduler", cluster.scheduler_address, "--json", *args,
    ]  # fmt: skip


def _start_matrix(
    cluster: DaskCluster, project: str, home: Path, gpu: str, output: int | None
) -> subprocess.Popen[str]:
    """`build-matrix --scheduler` in the background; `output` is where its stdout and stderr go (PIPE, DEVNULL)."""
    return subprocess.Popen(
        _matrix_command(cluster, "--gpu", gpu),
        env=cli_environment(home, project),
        stdout=output,
        stderr=output,
        text=True,
    )


def _cells(stdout: str) -> dict[str, dict[str, Any]]:
    return {cell["name"]: cell for cell in json.loads(stdout)["cells"]}


def _project_containers(engine: Engine, project: str) -> list[dict[str, Any]]:
    """The project's containers as the engine lists them (state and labels), without inspecting each: a container
    removed between the listing and its inspection would otherwise fail the poll."""
    client = docker.DockerClient(base_url=engine.docker_host, timeout=30)
    try:
        listed = client.containers.list(all=True, sparse=True, filters={"label": f"{PROJECT_LABEL}={project}"})
        return [{"state": c.attrs.get("State"), "labels": c.attrs.get("Labels") or {}} for c in listed]
    finally:
        client.close()


def _cell_logs(home: Path, lines: int = 25) -> str:
    """The tail of each cell process's stderr log in a worker's home (settings.logs_dir / "matrix-cells"): once its
    worker is gone, a cell writes its stages and its end there."""
    logs = sorted(home.glob("**/matrix-cells/*.stderr"))
    if not logs:
        return f"no cell stderr log under {home}"
    return "\n".join(
        f"--- {log}:\n" + ("\n".join(log.read_text(errors="replace").splitlines()[-lines:]) or "(empty)")
        for log in logs
    )


def test_two_cells_build_on_two_workers_and_come_back(dask_cluster: DaskCluster, project: str, tmp_path: Path) -> None:
    home = tmp_path / "requester"
    started = time.monotonic()
    done = subprocess.run(
        _matrix_command(dask_cluster, "--gpu", "both"),
        env=cli_environment(home, project),
        capture_output=True,
        text=True,
        timeout=MATRIX_TIMEOUT,
        check=False,
    )
    seconds = time.monotonic() - started
    assert done.returncode == 0, f"matrix failed:\n{done.stderr[-4000:]}\n{done.stdout[-6000:]}"
    cells = _cells(done.stdout)
    assert set(cells) == {"24.11-trixie", "24.11-trixie-gpu"}
    assert {cell["where"] for cell in cells.values()} == {"w1", "w2"}  # one cell on each worker
    for cell in cells.values():
        assert cell["state"] == "built" and cell["attempts"] == 1
        link = Path(cell["artifact"])
        assert link.parent == home / "builds" and link.is_symlink()
        found = store.find(link.resolve())
        assert found is not None and found.sha256 == cell["sha256"]
        worker_copy = Path(cell["result"]["stored"])  # the worker's store (a directory of this machine here)
        assert worker_copy.read_bytes() == link.resolve().read_bytes()
        assert (home / "builds" / (link.name + ".sbom.json")).is_file()
    for name, engine in dask_cluster.workers.items():
        assert _project_containers(engine.engine, project) == [], f"containers left on {name}'s engine"
    report_measurement(
        f"build-matrix --scheduler (2 Dask workers, one engine each; native trixie 24.11.5 --gpu both): "
        f"{seconds:.0f}s; cells "
        + ", ".join(f"{name} {cell['seconds']:.0f}s on {cell['where']}" for name, cell in cells.items())
    )


def _cold_ccache(cluster: DaskCluster) -> None:
    """Each worker compiles from an empty ccache of its own: with the session's warm one, a loaded machine can finish
    one cell's compile before the other's starts, and then the two never compile at the same time."""
    for home in cluster.homes.values():
        (home / "ccache").unlink()
        (home / "ccache").mkdir()


class _BuildWatcher:
    """Finds the engine whose build container of `project` appeared first, by polling every engine."""

    def __init__(self, cluster: DaskCluster, project: str) -> None:
        self._cluster = cluster
        self._project = project

    def building(self, process: subprocess.Popen[str]) -> list[str]:
        """The workers whose engine runs a build container of the project now."""
        assert process.poll() is None, "the matrix ended before the build containers started"
        return [
            name
            for name, worker in self._cluster.workers.items()
            if any(
                c["state"] == "running" and c["labels"].get(ROLE_LABEL) == "build"
                for c in _project_containers(worker.engine, self._project)
            )
        ]

    def first_building(self, process: subprocess.Popen[str], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            building = self.building(process)
            if building:
                return building[0]
            time.sleep(1.0)
        raise AssertionError(f"no build container of {self._project} started within {timeout:.0f} s")


def test_a_worker_killed_mid_build_has_its_cell_completed_on_the_other(
    dask_cluster: DaskCluster, project: str, tmp_path: Path
) -> None:
    home = tmp_path / "requester"
    output: dict[str, str] = {}
    process = _start_matrix(dask_cluster, project, home, "no", subprocess.PIPE)
    readers = [
        threading.Thread(target=lambda: output.__setitem__("stdout", process.stdout.read() if process.stdout else "")),
        threading.Thread(target=lambda: output.__setitem__("stderr", process.stderr.read() if process.stderr else "")),
    ]
    for reader in readers:
        reader.start()
    try:
        victim = _BuildWatcher(dask_cluster, project).first_building(process, timeout=1200)
        time.sleep(KILL_AFTER)  # well into the compile
        lost = dask_cluster.workers[victim]
        assert process.poll() is None, "the cell ended before its worker could be killed"
        os.kill(lost.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        returncode = process.wait(timeout=MATRIX_TIMEOUT)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=300)
        for reader in readers:
            reader.join()
    assert returncode == 0, f"matrix failed:\n{output['stderr'][-4000:]}\n{output['stdout'][-6000:]}"
    (cell,) = _cells(output["stdout"]).values()
    survivor = next(name for name in dask_cluster.workers if name != victim)
    assert cell["state"] == "built"
    assert cell["where"] == survivor and cell["attempts"] == 2
    found = store.find(Path(cell["artifact"]).resolve())
    assert found is not None and found.sha256 == cell["sha256"]
    # The dead worker's cell process got SIGTERM with its worker and removed its build container, seconds after the
    # kill (the survivor took minutes): no waiting here. SIGTERM comes once per thread of the dying worker; a cell that
    # let the second one interrupt its cleanup left its container to build on and exit (cell_process.die_with_parent).
    assert _project_containers(lost.engine, project) == [], (
        f"{victim}'s build container is still there; its cell's log:\n{_cell_logs(dask_cluster.homes[victim])}"
    )
    assert list((dask_cluster.homes[victim] / "builds").rglob("*.tar.gz")) == []
    report_measurement(
        f"build-matrix --scheduler, worker {victim} SIGKILLed {KILL_AFTER:.0f}s into the compile: the cell "
        f"completed on {survivor} {time.monotonic() - killed_at:.0f}s later (cell {cell['seconds']:.0f}s)"
    )


def test_ctrl_c_stops_the_cells_on_every_worker(dask_cluster: DaskCluster, project: str, tmp_path: Path) -> None:
    """SIGINT to the requesting `build-matrix` while both workers compile: it ends with 130, and no container of
    the project is left on either engine; the workers themselves keep serving."""
    _cold_ccache(dask_cluster)
    process = _start_matrix(dask_cluster, project, tmp_path / "requester", "both", subprocess.PIPE)
    try:
        watcher = _BuildWatcher(dask_cluster, project)
        deadline = time.monotonic() + 1200
        while len(watcher.building(process)) < 2:
            assert time.monotonic() < deadline, "the two cells did not both start compiling"
            time.sleep(1.0)
        interrupted_at = time.monotonic()
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stopped_in = time.monotonic() - interrupted_at
    assert process.returncode == 130, stderr[-3000:] + stdout[-3000:]
    for name, worker in dask_cluster.workers.items():
        assert _project_containers(worker.engine, project) == [], f"containers left on {name}'s engine"
        os.kill(worker.pid, 0)  # still running
    report_measurement(
        f"build-matrix --scheduler: Ctrl-C while 2 workers compiled; everything stopped in {stopped_in:.0f}s"
    )


def test_a_requester_killed_outright_leaves_no_cell_building(
    dask_cluster: DaskCluster, project: str, tmp_path: Path
) -> None:
    """SIGKILL to `build-matrix` (no Ctrl-C handler runs): its client is gone, the scheduler releases the cell's
    task, and the worker stops the cell, which removes its build container."""
    process = _start_matrix(dask_cluster, project, tmp_path / "requester", "no", subprocess.DEVNULL)
    try:
        worker = _BuildWatcher(dask_cluster, project).first_building(process, timeout=1200)
    finally:
        process.kill()
        process.wait()
    killed_at = time.monotonic()
    engine = dask_cluster.workers[worker].engine
    while _project_containers(engine, project):
        assert time.monotonic() - killed_at < 300, f"{worker} still builds 300 s after its requester died"
        time.sleep(2.0)
    report_measurement(
        f"build-matrix --scheduler killed outright: {worker} removed the cell's container "
        f"{time.monotonic() - killed_at:.0f}s later"
    )
