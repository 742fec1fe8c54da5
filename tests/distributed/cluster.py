"""A real local Dask cluster for the build-matrix tests (issue #14): a scheduler and two workers as processes on
127.0.0.1, each worker with its own Docker engine (an extra dockerd that tests/testenv.py starts beside
the default one: its own socket, data root, exec root and containerd) named by DOCKER_HOST in its environment.

Fixtures (tests/distributed/conftest.py makes them visible to the tests here):
  docker_engines  session: the engines w1 and w2, started by tests/testenv.py unless already running (and
                  then stopped again at the end of the session); skipped with the reason when an engine cannot be
                  started, a failure instead under scripts/run-tests (SLURM_FACTORY_TESTS_REQUIRE_DOCKER=1).
  dask_cluster    per test: `dask scheduler` and one `dask worker` per engine (no nanny, so a worker's pid is the
                  worker itself and a test can SIGKILL it), dashboards off, everything bound to 127.0.0.1; every
                  process it started is gone when the test ends. Each worker has a fresh SLURM_FACTORY_HOME whose
                  ccache is the session's (shared_ccache, a copy of the e2e build's).
  project         module: the Docker project name of the module's builds, whose containers and images are removed
                  from every engine at the end.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from tests import testenv
from tests.e2e.helpers import remove_project

REPO = Path(__file__).resolve().parents[2]
ENGINE_NAMES = ("w1", "w2")
HOST = "127.0.0.1"
START_TIMEOUT = 60.0
# A cold engine copies the default engine's debian:* images in (seconds each); a warm one has them already.
ENGINE_START_TIMEOUT = 600.0


@dataclass(frozen=True)
class Engine:
    name: str
    docker_host: str  # unix://.../docker.sock
    root_dir: str  # the engine's DockerRootDir, which tells engines apart


@dataclass(frozen=True)
class DaskWorker:
    name: str  # the name of its engine
    address: str  # tcp://127.0.0.1:PORT, for `Client.submit(..., workers=[address])`
    pid: int  # the worker process itself (no nanny): SIGKILL it to lose the worker
    engine: Engine


@dataclass(frozen=True)
class DaskCluster:
    scheduler_address: str
    scheduler_pid: int
    workers: dict[str, DaskWorker]  # by engine name
    homes: dict[str, Path]  # each worker's SLURM_FACTORY_HOME, by engine name


def engine_identity() -> dict[str, Any]:
    """Run on a worker: which process it is and which Docker engine its environment leads to."""
    client = docker.from_env(timeout=30)
    try:
        root_dir = client.info()["DockerRootDir"]
    finally:
        client.close()
    return {"pid": os.getpid(), "docker_host": os.environ["DOCKER_HOST"], "root_dir": root_dir}


def _unavailable(reason: str) -> None:
    if os.environ.get("SLURM_FACTORY_TESTS_REQUIRE_DOCKER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _root_dir(docker_host: str) -> str | None:
    """The engine's DockerRootDir, or None when nothing answers on its socket."""
    try:
        client = docker.DockerClient(base_url=docker_host, timeout=10)
    except docker.errors.DockerException:
        return None
    try:
        return str(client.info()["DockerRootDir"])
    except docker.errors.DockerException:
        return None
    finally:
        client.close()


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@pytest.fixture(scope="session")
def docker_engines() -> Iterator[dict[str, Engine]]:
    """The extra engines w1 and w2, by name (tests/testenv.py starts them; those it started are stopped again)."""
    wanted = {name: testenv.extra_engine(name) for name in ENGINE_NAMES}
    started = [name for name, engine in wanted.items() if _root_dir(engine.docker_host) is None]
    try:
        # Started side by side: most of a cold start is copying images in, which the two do at once.
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(ENGINE_NAMES)) as pool:
            starting = {name: pool.submit(testenv.ensure_engine, name) for name in started}
            failures = []
            for name, future in starting.items():
                try:
                    future.result(timeout=ENGINE_START_TIMEOUT)
                except (testenv.TestenvError, concurrent.futures.TimeoutError) as error:
                    failures.append(f"engine {name}: {str(error) or 'did not start in time'}")
        if failures:
            _unavailable("tests/testenv.py could not start the extra Docker engines: " + "\n".join(failures))
        engines = {}
        for name, engine in wanted.items():
            root_dir = _root_dir(engine.docker_host)
            if root_dir is None:
                _unavailable(f"engine {name} does not answer on {engine.docker_host}")
            assert root_dir is not None
            engines[name] = Engine(name, engine.docker_host, root_dir)
        yield engines
    finally:
        for name in started:
            testenv.engine_down(name)


def _spawn(name: str, args: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    with open(logs / f"{name}.log", "wb") as log:
        # Its own session (and so process group): teardown signals everything the process may have started.
        return subprocess.Popen(
            args, env=env, cwd=logs, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def _check_running(processes: dict[str, subprocess.Popen[bytes]], logs: Path) -> None:
    for name, process in processes.items():
        if process.poll() is not None:
            log = (logs / f"{name}.log").read_text(errors="replace")
            pytest.fail(f"dask {name} exited with {process.returncode} while the cluster started:\n{_tail(log)}")


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each process group (workers first), SIGKILL to what is left after 10 s; then nothing is left."""
    import psutil  # distributed's own dependency

    members: list[psutil.Process] = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            parent = psutil.Process(process.pid)
            members += [parent, *parent.children(recursive=True)]
    for signum, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signum)
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=wait)
        _, members = psutil.wait_procs(members, timeout=wait)
        members = [member for member in members if _running(member)]
        if not members and all(process.poll() is not None for process in processes):
            return
    raise RuntimeError(f"Dask processes still running after SIGKILL: {[member.pid for member in members]}")


def _running(process: Any) -> bool:
    """Alive and not a zombie that its new parent has not reaped yet."""
    import psutil

    try:
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(scope="session")
def shared_ccache(tmp_path_factory: pytest.TempPathFactory, warm_ccache: Path) -> Path:
    """One ccache for every worker home of the session, a copy of the e2e build's: what these tests prove is where
    cells run and what comes back, not a cold compile (the e2e build measures that). A test that needs the cells
    to compile at the same time gives each worker an empty one (`_cold_ccache`)."""
    ccache = tmp_path_factory.mktemp("dask-ccache")
    shutil.copytree(warm_ccache, ccache, dirs_exist_ok=True)
    return ccache


def _worker_home(logs: Path, name: str, ccache: Path) -> Path:
    """A fresh home (nothing built, so nothing is reused) whose ccache is the session's."""
    home = logs / f"{name}-home"
    home.mkdir()
    (home / "ccache").symlink_to(ccache, target_is_directory=True)
    return home


@pytest.fixture
def dask_cluster(docker_engines: dict[str, Engine], shared_ccache: Path, tmp_path: Path) -> Iterator[DaskCluster]:
    """A scheduler and one worker per engine on 127.0.0.1, each worker with its engine's DOCKER_HOST.

    --no-dashboard turns off the dashboard's pages only: the scheduler and each worker still serve their HTTP routes
    (health, metrics) on the dashboard address, which is every interface (port 8787 for the scheduler) unless
    given; --dashboard-address keeps them on 127.0.0.1 too, at a free port."""
    distributed = pytest.importorskip("distributed")
    logs = tmp_path / "dask"
    logs.mkdir()
    scheduler_file = logs / "scheduler.json"
    # Workers import the tests' own functions (tests.distributed.cluster) to run what a test submits.
    env = {name: value for name, value in os.environ.items() if name not in ("DOCKER_HOST", "SLURM_FACTORY_HOME")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    processes: dict[str, subprocess.Popen[bytes]] = {}
    homes = {name: _worker_home(logs, name, shared_ccache) for name in docker_engines}
    try:
        processes["scheduler"] = _spawn(
            "scheduler",
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", HOST, "--port", "0",
             "--no-dashboard", "--dashboard-address", f"{HOST}:0", "--scheduler-file", str(scheduler_file)],
            env, logs,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        scheduler_address = ""
        while not scheduler_address:
            _check_running(processes, logs)
            if time.monotonic() > deadline:
                pytest.fail(f"the Dask scheduler wrote no {scheduler_file} within {START_TIMEOUT:.0f} s")
            try:
                scheduler_address = json.loads(scheduler_file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)
        for name, engine in docker_engines.items():
            processes[name] = _spawn(
                name,
                [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(scheduler_file),
                 "--host", HOST, "--no-nanny", "--no-dashboard", "--dashboard-address", f"{HOST}:0",
                 "--nthreads", "1", "--name", name,
                 "--local-directory", str(logs / f"{name}-space"), "--death-timeout", str(int(START_TIMEOUT))],
                {**env, "DOCKER_HOST": engine.docker_host, "SLURM_FACTORY_HOME": str(homes[name])}, logs,
            )  # fmt: skip
        with distributed.Client(scheduler_address, timeout=START_TIMEOUT) as client:
            while True:
                _check_running(processes, logs)
                workers = client.scheduler_info()["workers"]
                if len(workers) == len(docker_engines):
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"{len(workers)} of {len(docker_engines)} Dask workers joined in {START_TIMEOUT:.0f} s")
                time.sleep(0.1)
            pids = client.run(os.getpid)
        by_name = {info["name"]: (address, pids[address]) for address, info in workers.items()}
        cluster_workers = {}
        for name, engine in docker_engines.items():
            address, pid = by_name[name]
            assert pid == processes[name].pid, f"worker {name} reports pid {pid}, not the process started"
            cluster_workers[name] = DaskWorker(name, address, pid, engine)
        yield DaskCluster(scheduler_address, processes["scheduler"].pid, cluster_workers, homes)
    finally:
        # Workers first, so that none of them outlives the scheduler waiting for it.
        _stop([process for name, process in processes.items() if name != "scheduler"])
        _stop([processes["scheduler"]] if "scheduler" in processes else [])


@pytest.fixture(scope="module")
def project(docker_engines: dict[str, Engine]) -> Iterator[str]:
    """One project for the module, so that a toolchain image an engine built for the first test serves the next."""
    name = f"sf-dist-{uuid.uuid4().hex[:8]}"
    yield name
    for engine in docker_engines.values():
        client = docker.DockerClient(base_url=engine.docker_host, timeout=120)
        try:
            remove_project(client, name)
        finally:
            client.close()
