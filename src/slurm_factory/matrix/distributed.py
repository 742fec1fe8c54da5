"""Cells on a Dask cluster: `build-matrix --scheduler tcp://HOST:8786` (extra `slurm-factory[distributed]`).

Each Dask worker builds with its own Docker engine (the one its environment names: DOCKER_HOST or the default
socket) and its own home (SLURM_FACTORY_HOME), as `slurm-factory cell` processes started by the worker. Before any
cell is sent, every worker is asked (`Client.run`) for its slurm-factory version, its Docker engine and the paths
the cells name; a mismatch or an unreachable engine is one clear error naming the workers.

While a cell runs, its stages come back as Dask events (`Worker.log_event` → `Client.subscribe_topic`); at its end
the worker returns the cell's result and the artifact's files, which land in this host's `builds/` store. Dask
re-runs a task whose worker died on another worker (a lost worker's cell process gets SIGTERM and removes its
containers; artifacts and caches are only ever written atomically). Ctrl-C sets a Dask `Event` that every running
cell watches: each stops as on Ctrl-C, and queued cells are cancelled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from slurm_factory import __version__
from slurm_factory.artifact import SOFTWARE_SUFFIX, atomic_writer, debug_companion_name
from slurm_factory.choices import host_arch
from slurm_factory.exceptions import ClusterError, ConfigurationError, quoted
from slurm_factory.matrix.cell_process import CellProcess, CellRun
from slurm_factory.matrix.cells import Cell, Matrix, PlannedCell
from slurm_factory.matrix.outcome import CellOutcome, State, outcome_of
from slurm_factory.options import BuildOptions, CompilerOptions, declared
from slurm_factory.store import artifact_file_names, link_contract_names, store_dir

INSTALL_HINT = "pip install 'slurm-factory[distributed]' (the same version on this host and on every worker)"
SCHEDULER_SCHEMES = ("tcp", "tls")
# Options whose values are secrets: over tcp:// they would cross the network in clear.
SECRET_OPTIONS = ("gpg_private_key", "gpg_passphrase")
CONNECT_TIMEOUT = 30.0
# How often a running cell on a worker looks at the cancel event and at whether its task is still wanted.
WATCH_INTERVAL = 2.0
# After Ctrl-C, how long the requester waits for a cell to confirm that it stopped (its own grace is 180 s).
STOP_WAIT = 240.0


def check_scheduler(address: str) -> str:
    """`tcp://HOST:PORT` or `tls://HOST:PORT`."""
    parts = urlsplit(address)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in SCHEDULER_SCHEMES or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ConfigurationError(
            f"--scheduler {quoted(address)}: give a Dask scheduler address, tcp://HOST:PORT or tls://HOST:PORT",
            hint="a scheduler started with `dask scheduler` listens on tcp://HOST:8786",
        )
    return address.rstrip("/")


def refuse_secrets_in_clear(address: str, cells: Iterable[Cell]) -> None:
    """A GPG key or passphrase travels to the workers inside the cell; never over an unencrypted connection."""
    if urlsplit(address).scheme == "tls":
        return
    given = sorted({name for cell in cells for name in SECRET_OPTIONS if _secret_value(cell.options.get(name))})
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise ConfigurationError(
            f"{flags} with --scheduler {address}: the secret would cross the network in clear",
            hint="use a tls:// scheduler (Dask's distributed.comm.tls settings), or keep the key in each worker's "
            "GnuPG home and pass only --signing-key",
        )


def _secret_value(value: object) -> bool:
    """A secret given inline; `--gpg-private-key @PATH` names a file that each worker reads itself."""
    return bool(value) and not str(value).startswith("@")


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ConfigurationError("--scheduler needs Dask's distributed package", hint=INSTALL_HINT) from None
    return distributed


def connect(address: str) -> Any:
    """A Dask client of the scheduler at `address` (TLS settings, if any, come from Dask's configuration)."""
    distributed = _distributed()
    try:
        return distributed.Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as error:
        raise ClusterError(
            f"the Dask scheduler at {address} does not answer: {error}",
            hint="start it with `dask scheduler` and check the address and port",
        ) from None


# --- what each worker is -------------------------------------------------------------------------------------------


def worker_facts(paths: Sequence[str]) -> dict[str, Any]:
    """Run on every worker before anything is sent: its slurm-factory, machine, Docker engine and which of the
    cells' paths it cannot read."""
    import docker
    import docker.errors

    engine_problem = None
    try:
        client = docker.from_env(timeout=15)
        try:
            client.ping()
        finally:
            client.close()
    except (docker.errors.DockerException, OSError) as error:
        engine_problem = str(error).splitlines()[0] if str(error) else type(error).__name__
    arch = host_arch()
    return {
        "version": __version__,
        "host": socket.gethostname(),
        "arch": arch.value if arch else None,
        "engine": os.environ.get("DOCKER_HOST") or "the default socket",
        "engine_problem": engine_problem,
        "missing_paths": [path for path in paths if not os.access(path, os.R_OK)],
    }


@dataclass(frozen=True)
class WorkerFacts:
    address: str
    name: str
    version: str | None = None
    host: str = ""
    arch: str | None = None
    engine: str = ""
    engine_problem: str | None = None
    missing_paths: tuple[str, ...] = ()
    unreachable: str | None = None

    def problems(self) -> list[str]:
        if self.unreachable:
            return [f"cannot run slurm-factory ({self.unreachable})"]
        found = []
        if self.version != __version__:
            found.append(f"runs slurm-factory {self.version}, this host {__version__}")
        if self.engine_problem:
            found.append(f"its Docker engine ({self.engine}) does not answer: {self.engine_problem}")
        if self.arch is None:
            found.append("its machine is not a build host (x86_64 or aarch64)")
        if self.missing_paths:
            found.append(f"cannot read {', '.join(self.missing_paths)}")
        return found


def cell_paths(cells: Iterable[Cell]) -> list[str]:
    """The local paths the cells name (`--spack-source`, `--slurm-source` …): each worker reads them itself."""
    path_options = {
        item.name for options in (BuildOptions, CompilerOptions) for item in declared(options) if item.option.path
    }
    paths = set()
    for cell in cells:
        values: list[Any] = []
        for name in path_options:
            value = cell.options.get(name)
            values.extend(value if isinstance(value, list | tuple) else [value])
        for name in SECRET_OPTIONS:  # `@path`: a file each worker reads
            secret = cell.options.get(name)
            if isinstance(secret, str) and secret.startswith("@"):
                values.append(secret[1:])
        for value in values:
            if value is None or "://" in str(value):
                continue
            paths.add(os.path.abspath(os.path.expanduser(str(value))))
    return sorted(paths)


def check_workers(client: Any, paths: Sequence[str]) -> dict[str, WorkerFacts]:
    """Every worker's facts; a `ClusterError` naming each worker that cannot build, or when there is none."""
    names = {address: str(info.get("name", address)) for address, info in client.scheduler_info()["workers"].items()}
    if not names:
        raise ClusterError(
            "the Dask scheduler has no workers",
            hint="start `dask worker SCHEDULER-ADDRESS --nthreads 1` on each build host (see the README)",
        )
    replies = client.run(worker_facts, list(paths), on_error="return")
    facts = {}
    for address, reply in replies.items():
        name = names.get(address, address)
        if isinstance(reply, BaseException):
            facts[address] = WorkerFacts(address, name, unreachable=f"{type(reply).__name__}: {reply}")
            continue
        facts[address] = WorkerFacts(
            address,
            name,
            reply.get("version"),
            reply.get("host", ""),
            reply.get("arch"),
            reply.get("engine", ""),
            reply.get("engine_problem"),
            tuple(reply.get("missing_paths", ())),
        )
    problems = [
        f"worker {fact.name} ({fact.address}) {problem}" for fact in facts.values() for problem in fact.problems()
    ]
    if problems:
        raise ClusterError(
            f"{len(problems)} problem(s) with the Dask workers; nothing was built:\n  " + "\n  ".join(problems),
            hint=f"every worker needs slurm-factory {__version__}, a Docker engine and the paths the cells name "
            "(a shared filesystem)",
        )
    return facts


def able_workers(planned: PlannedCell, facts: Mapping[str, WorkerFacts]) -> list[str]:
    """Workers that can build the cell: of its arch, or amd64 hosts for arm64 (cross-compiled or emulated); a cell
    planned `--emulate` only on those amd64 hosts (a host of its own arch refuses `--emulate`)."""
    arch = cell_arch(planned)
    own_arch = not planned.cell.options.get("emulate")
    return [
        address
        for address, fact in facts.items()
        if (own_arch and fact.arch == arch) or (fact.arch, arch) == ("amd64", "arm64")
    ]


def cell_arch(planned: PlannedCell) -> str:
    """The arch the cell was planned for."""
    return planned.plan.request.arch.value


def pinned_cell(planned: PlannedCell) -> Cell:
    """The cell with the arch the requester planned for written out: a worker's own default may differ."""
    options = {**planned.cell.options, "arch": cell_arch(planned)}
    return Cell(planned.name, planned.cell.kind, options, planned.cell.needs, planned.cell.after)


# --- on the worker -------------------------------------------------------------------------------------------------


class SealedCell:
    """A cell on its way to a worker. Dask logs a failed task's arguments; this one shows only the cell's name, so
    a passphrase inside (over tls://) never reaches a log."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"<matrix cell {self.data.get('name')}>"

    __str__ = __repr__


def build_cell_on_worker(sealed: SealedCell, project_name: str, topic: str, *, cancel_name: str) -> dict[str, Any]:
    """The Dask task: build one cell in a `slurm-factory cell` process on this worker, report its events on
    `topic`, stop it when `cancel_name` is set or the task is no longer wanted, and return its run and files."""
    from slurm_factory.config import load_settings

    distributed = _distributed()
    worker = distributed.get_worker()
    cell = Cell.from_json(sealed.data)
    key = worker.get_current_task()

    def report(event: dict[str, Any]) -> None:
        worker.log_event(topic, {"cell": cell.name, **event})

    report({"event": "worker", "worker_name": str(worker.name), "host": socket.gethostname()})
    cancel = distributed.Event(cancel_name, client=distributed.get_client())
    if cancel.is_set():
        return {"cancelled": True}
    settings = load_settings(project_name)
    stderr_path = settings.logs_dir / "matrix-cells" / f"{cell.name}-{uuid.uuid4().hex[:8]}.stderr"
    process = CellProcess(cell, project_name, stderr_path)
    finished = threading.Event()
    watcher = threading.Thread(
        target=_watch, args=(process, cancel, worker), kwargs={"key": key, "finished": finished}, daemon=True
    )
    watcher.start()
    try:
        run = process.run(report)
    finally:
        finished.set()
    reply: dict[str, Any] = {"run": _run_data(run), "worker": str(worker.name), "host": socket.gethostname()}
    if run.exit_code == 0 and run.result and run.result.get("stored"):
        reply["files"] = _artifact_files(Path(run.result["stored"]))
    return reply


def _watch(process: CellProcess, cancel: Any, worker: Any, *, key: Any, finished: threading.Event) -> None:
    """Stop the cell when the matrix is cancelled, or when its task was released (the requester is gone)."""
    while not finished.wait(WATCH_INTERVAL):
        with contextlib.suppress(Exception):  # the scheduler may be briefly unreachable: look again
            if cancel.is_set() or not _still_wanted(worker, key):
                process.stop()
                return


def _still_wanted(worker: Any, key: Any) -> bool:
    task = worker.state.tasks.get(key)
    return task is not None and task.state not in ("cancelled", "released", "forgotten")


def _run_data(run: CellRun) -> dict[str, Any]:
    return {
        "exit_code": run.exit_code,
        "result": run.result,
        "error": run.error,
        "stages": run.stages,
        "seconds": run.seconds,
        "stderr_path": str(run.stderr_path) if run.stderr_path else None,
    }


def _artifact_files(stored: Path) -> dict[str, bytes]:
    """The stored tarball, its sidecars and its -debug companion, by file name."""
    names = artifact_file_names(stored.name)
    return {name: (stored.parent / name).read_bytes() for name in names if (stored.parent / name).is_file()}


# --- on the requesting host ----------------------------------------------------------------------------------------


def receive_artifact(builds_dir: Path, build_id: str, files: Mapping[str, bytes], *, sha256: str | None) -> Path:
    """Write a worker's artifact into this host's store (the tarball checked against its sha256, the `.sha256`
    sidecar last, so that a half-received artifact is never found) and link the contract names to it."""
    tarballs = [name for name in files if name.endswith(SOFTWARE_SUFFIX)]
    expected = set(artifact_file_names(tarballs[0])) if len(tarballs) == 1 else set()
    if len(tarballs) != 1 or not set(files) <= expected:
        raise ClusterError(f"a worker returned an artifact of unexpected files: {sorted(files)}")
    tarball = tarballs[0]
    if sha256 is None or hashlib.sha256(files[tarball]).hexdigest() != sha256:
        raise ClusterError(f"{tarball} from the worker does not match the sha256 its build reported")
    _check_companion(files, tarball)
    directory = store_dir(builds_dir) / build_id
    directory.mkdir(parents=True, exist_ok=True)
    for name in sorted(files, key=lambda name: name.endswith(".sha256")):
        with atomic_writer(directory / name) as stream:
            stream.write(files[name])
    return link_contract_names(builds_dir, directory / tarball)


def _check_companion(files: Mapping[str, bytes], tarball: str) -> None:
    """The -debug companion a worker returned is the one the artifact's manifest names, byte for byte."""
    companion = debug_companion_name(tarball)
    if companion not in files:
        return
    try:
        manifest = json.loads(files.get(tarball + ".manifest.json", b"{}"))
        recorded = (manifest.get("debug_symbols") or {}).get("sha256")
    except (ValueError, AttributeError):
        recorded = None
    if recorded is None or hashlib.sha256(files[companion]).hexdigest() != recorded:
        raise ClusterError(f"{companion} from the worker does not match the sha256 its artifact's manifest records")


@dataclass
class _Tracked:
    on_event: Callable[[dict[str, Any]], None]
    workers: list[str] = field(default_factory=list)


class DaskLauncher:
    """A `Launcher` that sends each cell to the Dask cluster and brings its artifact back to `builds_dir`."""

    def __init__(self, client: Any, facts: Mapping[str, WorkerFacts], project_name: str, *, builds_dir: Path) -> None:
        distributed = _distributed()
        self._client = client
        self._facts = dict(facts)
        self._project_name = project_name
        self._builds_dir = builds_dir
        run_id = uuid.uuid4().hex[:12]
        self._topic = f"slurm-factory-matrix-{run_id}"
        self._cancel_name = f"slurm-factory-matrix-cancel-{run_id}"
        self._cancel = distributed.Event(self._cancel_name, client=client)
        self._tracked: dict[str, _Tracked] = {}
        self._futures: dict[str, Any] = {}
        self._built_on: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stopped = False
        self._stop_deadline: float | None = None
        client.subscribe_topic(self._topic, self._dispatch)

    def where(self) -> str:
        return "dask"

    def run_cell(self, planned: PlannedCell, on_event: Callable[[dict[str, Any]], None]) -> CellOutcome:
        started = time.monotonic()
        tracked = _Tracked(on_event)
        try:
            workers = self._workers_for(planned)
        except ClusterError as error:
            return CellOutcome(planned.name, planned.cell.kind, "failed", reason=error.message)
        with self._lock:
            if self._stopped:
                return CellOutcome(planned.name, planned.cell.kind, "cancelled", reason="interrupted")
            self._tracked[planned.name] = tracked
            future = self._client.submit(
                build_cell_on_worker,
                SealedCell(pinned_cell(planned).to_json()),
                self._project_name,
                self._topic,
                cancel_name=self._cancel_name,
                key=f"slurm-factory-cell-{planned.name}-{uuid.uuid4().hex[:8]}",
                workers=workers,
                allow_other_workers=False,
                pure=False,
            )
            self._futures[planned.name] = future
        try:
            reply = self._wait(future)
        except Exception as error:  # KilledWorker, CancelledError, a lost scheduler
            return self._lost(planned, tracked, error, seconds=time.monotonic() - started)
        finally:
            with self._lock:
                self._futures.pop(planned.name, None)
        return self._outcome(planned, tracked, reply)

    def _wait(self, future: Any) -> dict[str, Any]:
        """The task's reply; after `stop_all`, at most STOP_WAIT for it (a worker may be unreachable)."""
        while True:
            try:
                reply: dict[str, Any] = future.result(timeout=WATCH_INTERVAL)
                return reply
            except TimeoutError:
                if self._stop_deadline is not None and time.monotonic() > self._stop_deadline:
                    raise TimeoutError(f"the cell did not confirm within {STOP_WAIT:.0f} s that it stopped") from None

    def _workers_for(self, planned: PlannedCell) -> list[str] | None:
        """Where the cell may run: None for any worker (workers that join later too); the worker of the compiler
        cell it needs (that GCC is in its buildcache); else the workers of its arch. A `ClusterError` when no
        worker that could build it is left."""
        for need in planned.cell.needs:
            address = self._built_on.get(need)
            if address is None:
                continue
            if address not in self._client.scheduler_info()["workers"]:
                raise ClusterError(f"the worker that built {need} is gone, and that GCC with its buildcache")
            return [address]
        able = able_workers(planned, self._facts)
        if not able:
            raise ClusterError(f"no worker can build {cell_arch(planned)} cells")
        return None if set(able) == set(self._facts) else able

    def _outcome(self, planned: PlannedCell, tracked: _Tracked, reply: dict[str, Any]) -> CellOutcome:
        worker = str(reply.get("worker", "?"))
        attempts = max(len(tracked.workers), 1)
        if reply.get("cancelled"):
            return CellOutcome(planned.name, planned.cell.kind, "cancelled", reason="interrupted", where=worker)
        data = reply["run"]
        run = CellRun(data["exit_code"], data["result"], data["error"], list(data["stages"]), data["seconds"])
        outcome = outcome_of(planned.name, planned.cell.kind, run, where=worker)
        outcome.attempts = attempts
        if outcome.log and not outcome.succeeded:
            outcome.log = f"{worker}:{outcome.log}"
        elif outcome.log is None and data.get("stderr_path") and not outcome.succeeded:
            outcome.log = f"{worker}:{data['stderr_path']}"
        if not outcome.succeeded:
            return outcome
        if planned.cell.kind == "compiler":
            address = next((address for address, fact in self._facts.items() if fact.name == worker), None)
            if address is not None:
                self._built_on[planned.name] = address
            return outcome
        try:
            build_id = str((outcome.result or {}).get("build_id") or planned.plan.build_id)
            local = receive_artifact(self._builds_dir, build_id, reply.get("files", {}), sha256=outcome.sha256)
        except (ClusterError, OSError) as error:
            outcome.state, outcome.reason = "failed", f"the artifact did not come back from {worker}: {error}"
            return outcome
        if outcome.result is not None:
            outcome.result = {
                **outcome.result,
                "artifact": str(local),
                "worker_artifact": outcome.result.get("artifact"),
            }
        outcome.artifact = local
        return outcome

    def _lost(self, planned: PlannedCell, tracked: _Tracked, error: Exception, *, seconds: float) -> CellOutcome:
        state: State = "cancelled" if self._stopped else "failed"
        if self._stopped:
            reason = "interrupted"
        elif type(error).__name__ == "KilledWorker":
            reason = (
                f"its worker died on each of {len(tracked.workers)} tries "
                f"({', '.join(tracked.workers) or 'before it started'}); Dask gave up"
            )
        else:
            reason = f"{type(error).__name__}: {error}"
        where = tracked.workers[-1] if tracked.workers else "dask"
        return CellOutcome(
            planned.name, planned.cell.kind, state, round(seconds, 3), reason=reason, where=where,
            attempts=max(len(tracked.workers), 1),
        )  # fmt: skip

    def _dispatch(self, event: tuple[float, dict[str, Any]]) -> None:
        """A cell's event from its worker (on the client's event loop: no blocking here)."""
        message = dict(event[1])
        message.pop("worker", None)  # the scheduler adds the sending worker's address
        tracked = self._tracked.get(str(message.pop("cell", "")))
        if tracked is None:
            return
        if message.get("event") == "worker":
            tracked.workers.append(str(message.get("worker_name")))
        with contextlib.suppress(Exception):  # a listener's failure must not break the client
            tracked.on_event(message)

    def stop_all(self) -> None:
        """Every running cell stops (its worker removes its containers); queued cells are cancelled."""
        with self._lock:
            self._stopped = True
            self._stop_deadline = time.monotonic() + STOP_WAIT
            futures = list(self._futures.values())
        with contextlib.suppress(Exception):
            self._cancel.set()
        queued = [future for future in futures if future.status == "pending" and not self._started(future)]
        with contextlib.suppress(Exception):
            self._client.cancel(queued)

    def _started(self, future: Any) -> bool:
        return any(tracked.workers for name, tracked in self._tracked.items() if self._futures.get(name) is future)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.unsubscribe_topic(self._topic)
        with contextlib.suppress(Exception):
            self._cancel.clear()


def dask_launcher(address: str, matrix: Matrix, project_name: str, *, builds_dir: Path) -> tuple[Any, DaskLauncher]:
    """Connect, check every worker, and return the client and the launcher (close both when done)."""
    cells = [planned.cell for planned in matrix.cells]
    refuse_secrets_in_clear(address, cells)
    client = connect(address)
    try:
        facts = check_workers(client, cell_paths(cells))
        unbuildable = [planned.name for planned in matrix.cells if not able_workers(planned, facts)]
        if unbuildable:
            raise ClusterError(
                f"no worker can build {', '.join(unbuildable)}: the workers are "
                + ", ".join(f"{fact.name} ({fact.arch})" for fact in facts.values())
            )
        return client, DaskLauncher(client, facts, project_name, builds_dir=builds_dir)
    except BaseException:
        client.close()
        raise
