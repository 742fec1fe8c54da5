"""build-matrix on a Dask cluster, without Docker: the scheduler address, secrets never sent in clear, what every
worker must have (checked before a cell is sent), which worker may build which cell, artifacts received into this
host's store, and a whole cell through a real in-process Dask cluster (a worker answering from its own store)."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slurm_factory import __version__, store
from slurm_factory.choices import Arch
from slurm_factory.config import Settings
from slurm_factory.exceptions import ClusterError, ConfigurationError
from slurm_factory.matrix.cells import Cell, expand, plan_matrix
from slurm_factory.matrix.distributed import (
    DaskLauncher,
    SealedCell,
    WorkerFacts,
    able_workers,
    cell_arch,
    cell_paths,
    check_scheduler,
    check_workers,
    pinned_cell,
    receive_artifact,
    refuse_secrets_in_clear,
)
from slurm_factory.matrix.outcome import QuietListener
from slurm_factory.matrix.run import build_matrix
from slurm_factory.matrix.schedule import run_matrix
from tests.unit.test_matrix import _store_native_artifact

distributed = pytest.importorskip("distributed")

NATIVE_CELL = {"slurm_version": "24.11.5", "toolchain": "trixie", "engine": "native"}


@pytest.mark.parametrize("address", ["tcp://10.1.2.3:8786", "tls://sched.example:8786", "tcp://[::1]:8786/"])
def test_a_scheduler_is_tcp_or_tls_with_a_port(address: str) -> None:
    assert check_scheduler(address) == address.rstrip("/")


@pytest.mark.parametrize("address", ["10.1.2.3:8786", "http://sched:8786", "tcp://sched", "tcp://sched:port", "tcp://"])
def test_a_malformed_scheduler_is_refused(address: str) -> None:
    with pytest.raises(ConfigurationError, match="tcp://HOST:PORT or tls://HOST:PORT"):
        check_scheduler(address)


def test_a_passphrase_is_never_sent_over_tcp(settings: Settings) -> None:
    cells = [Cell("a", "slurm", {**NATIVE_CELL, "gpg_passphrase": "hunter2"})]
    with pytest.raises(ConfigurationError, match="--gpg-passphrase with --scheduler tcp://") as caught:
        refuse_secrets_in_clear("tcp://127.0.0.1:1", cells)
    assert "hunter2" not in str(caught.value) + str(caught.value.hint)
    refuse_secrets_in_clear("tls://127.0.0.1:1", cells)  # encrypted: allowed
    refuse_secrets_in_clear("tcp://127.0.0.1:1", [Cell("b", "slurm", {**NATIVE_CELL, "signing_key": "0xABCD"})])


def test_key_and_passphrase_files_are_read_by_each_worker(tmp_path: Path) -> None:
    secrets = {"gpg_private_key": f"@{tmp_path}/signing.asc", "gpg_passphrase": f"@{tmp_path}/passphrase"}
    cells = [Cell("a", "slurm", {**NATIVE_CELL, **secrets})]
    refuse_secrets_in_clear("tcp://127.0.0.1:1", cells)  # paths, not the secrets: allowed
    assert cell_paths(cells) == [f"{tmp_path}/passphrase", f"{tmp_path}/signing.asc"]  # … checked on every worker


def test_a_cell_on_its_way_shows_only_its_name() -> None:
    sealed = SealedCell(Cell("24.11-trixie", "slurm", {**NATIVE_CELL, "gpg_passphrase": "hunter2"}).to_json())
    assert repr(sealed) == str(sealed) == "<matrix cell 24.11-trixie>"
    assert "hunter2" not in repr((sealed, "project"))


def test_build_matrix_refuses_a_secret_over_tcp_before_connecting(settings: Settings) -> None:
    cells = [Cell("a", "slurm", {**NATIVE_CELL, "gpg_private_key": "LS0tLS1CRUdJTiBQR1A="})]
    # Port 1 on loopback is closed: reaching it would be a different error.
    with pytest.raises(ConfigurationError, match="--gpg-private-key"):
        build_matrix(cells, settings=settings, scheduler="tcp://127.0.0.1:1")


def test_an_unreachable_scheduler_is_one_clear_error(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("slurm_factory.matrix.distributed.CONNECT_TIMEOUT", 2.0)  # the refusal is retried until then
    with pytest.raises(ClusterError, match=r"scheduler at tcp://127\.0\.0\.1:1 does not answer"):
        build_matrix([Cell("a", "slurm", NATIVE_CELL)], settings=settings, scheduler="tcp://127.0.0.1:1")


def test_the_paths_the_cells_name_are_checked_on_every_worker(tmp_path: Path) -> None:
    cells = [
        Cell("a", "slurm", {**NATIVE_CELL, "slurm_source": str(tmp_path / "slurm.tar.gz")}),
        Cell("b", "slurm", {**NATIVE_CELL, "slurm_source": "https://download.invalid/slurm.tar.gz"}),
        Cell("c", "compiler", {"compiler_version": "13.4.0", "spack_source": str(tmp_path / "spack.tar.gz")}),
    ]
    assert cell_paths(cells) == sorted([str(tmp_path / "slurm.tar.gz"), str(tmp_path / "spack.tar.gz")])


def test_each_worker_problem_is_named() -> None:
    good = WorkerFacts("tcp://h1:1", "w1", __version__, "h1", "amd64", "the default socket")
    assert good.problems() == []
    old = WorkerFacts("tcp://h2:1", "w2", "0.0.1", "h2", "amd64", "unix:///x.sock", "refused", ("/spack.tar.gz",))
    assert old.problems() == [
        f"runs slurm-factory 0.0.1, this host {__version__}",
        "its Docker engine (unix:///x.sock) does not answer: refused",
        "cannot read /spack.tar.gz",
    ]
    missing = WorkerFacts("tcp://h3:1", "w3", unreachable="ModuleNotFoundError: No module named 'slurm_factory'")
    assert missing.problems() == ["cannot run slurm-factory (ModuleNotFoundError: No module named 'slurm_factory')"]


def test_a_cell_goes_to_workers_of_its_arch_or_to_amd64_hosts_for_a_cross_build(settings: Settings) -> None:
    facts = {
        "tcp://x:1": WorkerFacts("tcp://x:1", "x86", __version__, arch="amd64"),
        "tcp://a:1": WorkerFacts("tcp://a:1", "arm", __version__, arch="arm64"),
    }
    matrix = plan_matrix([Cell("c", "slurm", {**NATIVE_CELL, "arch": arch}) for arch in ("amd64", "arm64")], settings)
    amd64, arm64 = matrix.cells
    assert able_workers(amd64, facts) == ["tcp://x:1"]
    assert able_workers(arm64, facts) == ["tcp://x:1", "tcp://a:1"]
    arm64_gcc = expand(
        {"toolchain": ("noble",), "arch": ("arm64",)}, {"compiler_version": "13.4.0", "use_local_buildcache": True}
    )
    compiler, _ = plan_matrix(arm64_gcc, settings).cells
    assert compiler.cell.kind == "compiler"
    assert able_workers(compiler, facts) == ["tcp://x:1", "tcp://a:1"]  # built under emulation on amd64 too
    assert pinned_cell(compiler).options["arch"] == "arm64"


def test_an_emulated_cell_goes_only_to_the_amd64_hosts_that_emulate_its_arch(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("slurm_factory.request.host_arch", lambda: Arch.AMD64)
    monkeypatch.setattr("slurm_factory.matrix.cells.host_arch", lambda: Arch.AMD64)
    facts = {
        "tcp://x:1": WorkerFacts("tcp://x:1", "x86", __version__, arch="amd64"),
        "tcp://a:1": WorkerFacts("tcp://a:1", "arm", __version__, arch="arm64"),
    }
    amd64, arm64 = plan_matrix(expand({"arch": ("amd64", "arm64")}, {**NATIVE_CELL, "emulate": True}), settings).cells
    assert able_workers(arm64, facts) == ["tcp://x:1"], "an arm64 host refuses --emulate"
    assert able_workers(amd64, facts) == ["tcp://x:1"]


def test_a_cell_is_sent_with_the_arch_this_host_planned(settings: Settings) -> None:
    (planned,) = plan_matrix([Cell("c", "slurm", NATIVE_CELL)], settings).cells
    assert "arch" not in planned.cell.options
    assert pinned_cell(planned).options == {**NATIVE_CELL, "arch": planned.plan.request.arch.value}


def _files(stored: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in stored.parent.iterdir() if path.name.startswith(stored.name)}


def test_a_received_artifact_is_stored_and_linked(settings: Settings, tmp_path: Path) -> None:
    stored = _store_native_artifact(settings, tmp_path)
    builds = tmp_path / "requester-builds"
    sha256 = hashlib.sha256(stored.read_bytes()).hexdigest()
    link = receive_artifact(builds, "0123456789abcdef", _files(stored), sha256=sha256)
    assert link == builds / stored.name and link.is_symlink()
    found = store.find(link.resolve())
    assert found is not None and found.sha256 == sha256
    assert (builds / (stored.name + ".sbom.json")).resolve().parent == builds / "by-id" / "0123456789abcdef"


def test_a_received_artifact_that_does_not_match_its_sha256_is_refused(settings: Settings, tmp_path: Path) -> None:
    stored = _store_native_artifact(settings, tmp_path)
    files = _files(stored)
    with pytest.raises(ClusterError, match="does not match the sha256"):
        receive_artifact(tmp_path / "builds", "0123456789abcdef", files, sha256="0" * 64)
    with pytest.raises(ClusterError, match="unexpected files"):
        receive_artifact(tmp_path / "builds", "0123456789abcdef", {**files, "../escape": b""}, sha256=None)
    assert not (tmp_path / "builds" / "by-id").exists()


# --- a real (in-process) Dask cluster ------------------------------------------------------------------------------


@pytest.fixture
def local_client() -> Iterator[Any]:
    """A scheduler and one single-thread worker in this process (inproc:// transport: no network)."""
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None, scheduler_port=0
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        yield client


def test_a_worker_without_a_docker_engine_is_named_before_anything_is_sent(
    local_client: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    with pytest.raises(ClusterError, match=r"2 problem\(s\) with the Dask workers; nothing was built") as caught:
        check_workers(local_client, [str(tmp_path / "missing.tar.gz")])
    assert f"its Docker engine (unix://{tmp_path}/no-such.sock) does not answer" in caught.value.message
    assert f"cannot read {tmp_path}/missing.tar.gz" in caught.value.message


def test_a_cell_built_on_a_worker_comes_back_to_this_hosts_builds(
    local_client: Any, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's home holds the artifact (so its cell process answers from its store without Docker); the
    requester's home is another directory, which receives it."""
    worker_home = Settings(project_name=settings.project_name, home=tmp_path / "worker-home")
    stored = _store_native_artifact(worker_home, tmp_path)
    monkeypatch.setenv("SLURM_FACTORY_HOME", str(worker_home.home))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    matrix = plan_matrix([Cell("c", "slurm", NATIVE_CELL)], settings)
    ((address, info),) = local_client.scheduler_info()["workers"].items()
    name = str(info["name"])
    facts = {address: WorkerFacts(address, name, __version__, arch=matrix.cells[0].plan.request.arch.value)}
    events: list[tuple[str, dict[str, Any]]] = []

    class Recorder(QuietListener):
        def event(self, name: str, event: dict[str, Any]) -> None:
            events.append((name, event))

    launcher = DaskLauncher(local_client, facts, settings.project_name, builds_dir=settings.builds_dir)
    try:
        (outcome,) = run_matrix(matrix, launcher, 1, listener=Recorder())
    finally:
        launcher.close()
    assert outcome.state == "reused", outcome.reason
    assert outcome.where == name and outcome.attempts == 1
    assert outcome.artifact == settings.builds_dir / stored.name
    assert outcome.artifact.resolve().read_bytes() == stored.read_bytes()
    assert outcome.result is not None and outcome.result["worker_artifact"] == str(worker_home.builds_dir / stored.name)
    assert events[0][1] == {"event": "worker", "worker_name": name, "host": socket.gethostname()}
    assert [event["event"] for _, event in events][-1] == "result"
    assert {cell for cell, _ in events} == {"24.11-trixie"}


def test_a_cell_whose_compiler_worker_is_gone_fails_saying_so(local_client: Any, settings: Settings) -> None:
    """The GCC a compiler cell built lives in that worker's buildcache: without that worker, its cells cannot
    build anywhere, and say why instead of waiting for a worker that will not come back."""
    cells = expand({"toolchain": ("noble",)}, {"compiler_version": "13.4.0", "use_local_buildcache": True})
    compiler, slurm = plan_matrix(cells, settings).cells
    assert slurm.cell.needs == (compiler.name,)
    ((address, info),) = local_client.scheduler_info()["workers"].items()
    facts = {address: WorkerFacts(address, str(info["name"]), __version__, arch=cell_arch(slurm))}
    launcher = DaskLauncher(local_client, facts, settings.project_name, builds_dir=settings.builds_dir)
    try:
        launcher._built_on[compiler.name] = "tcp://127.0.0.1:1"  # a worker no longer in the cluster
        outcome = launcher.run_cell(slurm, lambda event: None)
    finally:
        launcher.close()
    assert outcome.state == "failed"
    assert outcome.reason == f"the worker that built {compiler.name} is gone, and that GCC with its buildcache"
