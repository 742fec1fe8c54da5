"""build-matrix without Docker: expanding the axes into cells, validating them all at once, ordering compiler cells
first, scheduling (needs, --jobs, a failure that skips its dependants, Ctrl-C), and a real `slurm-factory cell`
child process answering from the store."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from slurm_factory import cli, store
from slurm_factory.artifact import build_manifest, write_artifact
from slurm_factory.choices import Arch
from slurm_factory.config import Settings
from slurm_factory.exceptions import EXIT_FAILURE, EXIT_USAGE, ConfigurationError
from slurm_factory.matrix.cell_process import CellProcess
from slurm_factory.matrix.cells import Cell, PlannedCell, expand, parse_axis, plan_matrix
from slurm_factory.matrix.outcome import CellOutcome, QuietListener, outcome_of
from slurm_factory.matrix.run import MatrixResult, build_matrix
from slurm_factory.matrix.schedule import run_matrix
from slurm_factory.plan import make_plan
from slurm_factory.request import make_request
from slurm_factory.sbom import write_sbom
from tests.unit.buildcache_entries import write_spec_entry
from tests.unit.test_artifact import META, _tree_bytes

NATIVE = {"engine": "native"}


def _cells(**axes: str) -> list[Cell]:
    return expand({name: parse_axis(name, text) for name, text in axes.items()}, NATIVE)


# --- axes and cells ------------------------------------------------------------------------------------------------


def test_an_axis_is_a_comma_list_kept_in_order_without_repeats() -> None:
    assert parse_axis("slurm_version", "25.11, 24.11,25.11") == ("25.11", "24.11")
    assert parse_axis("toolchain", None) is None


@pytest.mark.parametrize(("text", "values"), [("no", (False,)), ("YES", (True,)), ("both", (False, True))])
def test_the_gpu_axis_is_no_yes_or_both(text: str, values: tuple[bool, ...]) -> None:
    assert parse_axis("gpu", text) == values


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [("gpu", "maybe", "valid values: no, yes, both"), ("toolchain", "trixie,,noble", "an empty value")],
)
def test_a_malformed_axis_is_refused(name: str, text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_axis(name, text)


def test_cells_are_every_combination_with_the_shared_options() -> None:
    cells = _cells(slurm_version="25.11,24.11", toolchain="trixie,bookworm", gpu="both")
    assert len(cells) == 8
    assert [(c.options["slurm_version"], c.options["toolchain"], c.options["gpu"]) for c in cells[:3]] == [
        ("25.11", "trixie", False),
        ("25.11", "trixie", True),
        ("25.11", "bookworm", False),
    ]
    assert all(cell.options["engine"] == "native" for cell in cells)


def test_a_cell_travels_as_json() -> None:
    cell = Cell("24.11-trixie", "slurm", {"slurm_version": "24.11", "gpu": True}, needs=("gcc-13.4.0-trixie",))
    assert Cell.from_json(json.loads(json.dumps(cell.to_json()))) == cell
    with pytest.raises(ConfigurationError, match="kind 'shell'"):
        Cell.from_json({"name": "x", "kind": "shell", "options": {}})


# --- validation: every cell, before anything starts ----------------------------------------------------------------


def test_cells_are_named_by_their_artifact(settings: Settings) -> None:
    matrix = plan_matrix(_cells(slurm_version="24.11.5", toolchain="trixie", gpu="both"), settings)
    assert matrix.names() == ["24.11-trixie", "24.11-trixie-gpu"]


def test_every_invalid_cell_is_named_at_once(settings: Settings) -> None:
    with pytest.raises(ConfigurationError) as raised:
        plan_matrix(_cells(slurm_version="24.11,25.11", toolchain="trixie,rockylinux9", gpu="both"), settings)
    message = raised.value.message
    assert message.startswith("2 of 8 matrix cells are invalid; nothing was built")
    assert "cell 24.11-rockylinux9-gpu: --gpu with --engine native" in message
    assert "cell 25.11-rockylinux9-gpu" in message
    assert raised.value.exit_code == EXIT_USAGE


def test_emulate_given_once_emulates_only_the_cells_of_another_arch(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("slurm_factory.request.host_arch", lambda: Arch.AMD64)
    monkeypatch.setattr("slurm_factory.matrix.cells.host_arch", lambda: Arch.AMD64)
    shared = {"engine": "native", "slurm_version": "24.11.5", "emulate": True}
    cells = expand({"toolchain": ("trixie",), "arch": ("amd64", "arm64")}, shared)
    amd64, arm64 = plan_matrix(cells, settings).cells
    assert (amd64.name, amd64.plan.request.emulated) == ("24.11-trixie", False)
    assert (arm64.name, arm64.plan.request.emulated, arm64.plan.request.cross) == ("24.11-trixie-arm64", True, False)
    with pytest.raises(
        ConfigurationError, match=r"--emulate builds the cells of another machine .* no cell is for one"
    ):
        expand({"toolchain": ("trixie",)}, shared)  # no --arch: this host's own
    with pytest.raises(ConfigurationError, match="no cell is for one"):
        expand({"toolchain": ("trixie",), "arch": ("amd64",)}, shared)


def test_two_cells_that_make_the_same_artifact_are_refused(settings: Settings) -> None:
    with pytest.raises(ConfigurationError, match=r"24\.11 and 24\.11\.5 both make slurm-24\.11-trixie-software"):
        plan_matrix(_cells(slurm_version="24.11,24.11.5", toolchain="trixie"), settings)


def test_a_missing_compiler_is_built_once_per_toolchain_before_its_cells(settings: Settings) -> None:
    cells = expand(
        {"slurm_version": ("24.11", "25.11"), "toolchain": ("noble", "jammy")},
        {"compiler_version": "13.4.0", "use_local_buildcache": True},
    )
    matrix = plan_matrix(cells, settings)
    assert matrix.names()[:2] == ["gcc-13.4.0-noble", "gcc-13.4.0-jammy"]
    assert [planned.cell.kind for planned in matrix.cells] == ["compiler"] * 2 + ["slurm"] * 4
    needs = {planned.name: planned.cell.needs for planned in matrix.cells}
    assert needs["24.11-noble"] == ("gcc-13.4.0-noble",)
    assert needs["25.11-jammy"] == ("gcc-13.4.0-jammy",)


def test_a_compiler_already_in_the_local_buildcache_is_not_built_again(settings: Settings) -> None:
    write_spec_entry(settings.buildcache_dir, "gcc", "13.4.0", "x86_64_v2", signed=True)
    cells = expand({"toolchain": ("noble",)}, {"compiler_version": "13.4.0", "use_local_buildcache": True})
    matrix = plan_matrix(cells, settings)
    assert [planned.cell.kind for planned in matrix.cells] == ["slurm"]


def test_an_arm64_cell_builds_its_own_compiler_beside_the_cached_amd64_one(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("slurm_factory.request.host_arch", lambda: Arch.AMD64)
    write_spec_entry(settings.buildcache_dir, "gcc", "13.4.0", "x86_64_v2")
    cells = expand(
        {"toolchain": ("noble",), "arch": ("amd64", "arm64")},
        {"compiler_version": "13.4.0", "use_local_buildcache": True},
    )
    matrix = plan_matrix(cells, settings)
    compilers = [planned for planned in matrix.cells if planned.cell.kind == "compiler"]
    assert [planned.name for planned in compilers] == ["gcc-13.4.0-noble-arm64"]
    assert compilers[0].plan.request.emulated and compilers[0].plan.request.base_image == "arm64v8/ubuntu:noble"
    needs = {planned.name: planned.cell.needs for planned in matrix.cells}
    assert needs["25.11-noble"] == () and needs["25.11-noble-arm64"] == ("gcc-13.4.0-noble-arm64",)


def test_jobs_must_be_a_positive_count(settings: Settings) -> None:
    with pytest.raises(ConfigurationError, match="--jobs 0"):
        build_matrix(_cells(toolchain="trixie"), settings=settings, jobs=0)


# --- scheduling ----------------------------------------------------------------------------------------------------


class _ScriptedLauncher:
    """A launcher of our own protocol whose cells end as scripted, recording how many ran at once. (Real cells are
    built by the e2e and distributed tests.)"""

    def __init__(
        self, failing: frozenset[str] = frozenset(), seconds: float = 0.05, block: threading.Event | None = None
    ) -> None:
        self.failing = failing
        self.seconds = seconds
        self.block = block
        self.started: list[str] = []
        self.running = 0
        self.most_at_once = 0
        self.stopped = threading.Event()
        self._lock = threading.Lock()

    def where(self) -> str:
        return "scripted"

    def run_cell(self, planned: PlannedCell, on_event: Callable[[dict[str, Any]], None]) -> CellOutcome:
        with self._lock:
            self.started.append(planned.name)
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        on_event({"event": "stage", "stage": "compile"})
        if self.block is not None:
            self.stopped.wait(10)
        else:
            time.sleep(self.seconds)
        with self._lock:
            self.running -= 1
        if self.stopped.is_set():
            return CellOutcome(planned.name, planned.cell.kind, "cancelled", reason="interrupted")
        if planned.name in self.failing:
            return CellOutcome(planned.name, planned.cell.kind, "failed", reason="scripted")
        return CellOutcome(planned.name, planned.cell.kind, "built")

    def stop_all(self) -> None:
        self.stopped.set()


def _compiler_matrix(settings: Settings) -> Any:
    cells = expand(
        {"slurm_version": ("24.11", "25.11"), "toolchain": ("noble", "jammy")},
        {"compiler_version": "13.4.0", "use_local_buildcache": True},
    )
    return plan_matrix(cells, settings)


def test_cells_start_after_what_they_need_and_never_more_than_jobs_at_once(settings: Settings) -> None:
    launcher = _ScriptedLauncher()
    outcomes = run_matrix(_compiler_matrix(settings), launcher, 2, listener=QuietListener())
    assert all(outcome.state == "built" for outcome in outcomes)
    assert launcher.most_at_once == 2
    assert set(launcher.started[:2]) == {"gcc-13.4.0-noble", "gcc-13.4.0-jammy"}


def test_a_failed_cell_skips_its_dependants_and_the_others_still_build(settings: Settings) -> None:
    launcher = _ScriptedLauncher(failing=frozenset({"gcc-13.4.0-noble"}))
    outcomes = {
        outcome.name: outcome
        for outcome in run_matrix(_compiler_matrix(settings), launcher, 1, listener=QuietListener())
    }
    assert outcomes["gcc-13.4.0-noble"].state == "failed"
    assert outcomes["24.11-noble"].state == "skipped"
    assert outcomes["24.11-noble"].reason == "gcc-13.4.0-noble did not succeed"
    assert outcomes["24.11-jammy"].state == outcomes["25.11-jammy"].state == "built"
    assert "24.11-noble" not in launcher.started


def test_ctrl_c_stops_the_running_cells_and_cancels_the_rest(settings: Settings) -> None:
    launcher = _ScriptedLauncher(block=threading.Event())
    matrix = _compiler_matrix(settings)  # planned first: on a loaded machine planning can outlast the timer
    timer = threading.Timer(0.3, _interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        run_matrix(matrix, launcher, 1, listener=QuietListener())
    assert launcher.stopped.is_set()
    assert launcher.started == ["gcc-13.4.0-noble"]


def _interrupt_main() -> None:
    import _thread

    _thread.interrupt_main()


# --- a real cell process -------------------------------------------------------------------------------------------


def _store_native_artifact(settings: Settings, tmp_path: Path) -> Path:
    plan = make_plan(make_request(slurm_version="24.11.5", toolchain="trixie", engine="native"), settings)
    tree = tmp_path / "tree.tar"
    tree.write_bytes(_tree_bytes())
    artifact = write_artifact(
        plan, tree, build_manifest(plan, META), destination=store.stored_path(settings.builds_dir, plan)
    )
    write_sbom(artifact)
    return artifact.path


def test_a_cell_process_reports_its_result(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stored = _store_native_artifact(settings, tmp_path)
    monkeypatch.setenv("SLURM_FACTORY_HOME", str(settings.home))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")  # the answer must come from the store
    cell = Cell("24.11-trixie", "slurm", {"slurm_version": "24.11.5", "toolchain": "trixie", "engine": "native"})
    events: list[dict[str, Any]] = []
    run = CellProcess(cell, settings.project_name, tmp_path / "cell.stderr").run(events.append)
    outcome = outcome_of("24.11-trixie", "slurm", run)
    assert run.exit_code == 0, (tmp_path / "cell.stderr").read_text()
    assert outcome.state == "reused"
    assert outcome.artifact == settings.builds_dir / stored.name
    assert run.result is not None and outcome.sha256 == run.result["sha256"]
    assert [event["event"] for event in events][-1] == "result"


def test_a_cell_process_reports_an_invalid_cell_as_its_error(settings: Settings, tmp_path: Path) -> None:
    cell = Cell("bad", "slurm", {"slurm_version": "24.11.5", "toolchain": "trixie", "gpu": "yes"})
    run = CellProcess(cell, settings.project_name, tmp_path / "cell.stderr").run(lambda event: None)
    outcome = outcome_of("bad", "slurm", run)
    assert run.exit_code == EXIT_USAGE
    assert outcome.state == "failed"
    assert outcome.reason == "gpu='yes': expected True or False, not str"


# --- the command ---------------------------------------------------------------------------------------------------


def test_build_matrix_dry_run_lists_the_cells_and_their_plans(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_FACTORY_HOME", str(settings.home))
    args = ["build-matrix", "--slurm-version", "24.11,25.11", "--toolchain", "trixie", "--gpu", "both"]
    result = CliRunner().invoke(cli.app, [*args, "--engine", "native", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [cell["name"] for cell in listed["cells"]] == [
        "24.11-trixie",
        "24.11-trixie-gpu",
        "25.11-trixie",
        "25.11-trixie-gpu",
    ]
    assert len({cell["build_id"] for cell in listed["cells"]}) == 4
    assert listed["dry_run"] is True


def test_build_matrix_refuses_bad_input_with_exit_2(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_FACTORY_HOME", str(settings.home))
    result = CliRunner().invoke(cli.app, ["build-matrix", "--toolchain", "trixie,nosuchos", "--engine", "native"])
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.splitlines()[:2] == [
        "error: 1 of 2 matrix cells are invalid; nothing was built:",
        "  cell nosuchos: --toolchain 'nosuchos' is unknown; valid toolchains: resolute, noble, jammy, rockylinux10, "
        "rockylinux9, rockylinux8, trixie, bookworm",
    ]


def test_the_matrix_fails_when_any_cell_failed(settings: Settings) -> None:
    matrix = plan_matrix(_cells(toolchain="trixie", gpu="both"), settings)
    built = CellOutcome("24.11-trixie", "slurm", "built")
    result = MatrixResult(matrix, [built, CellOutcome("24.11-trixie-gpu", "slurm", "failed", reason="boom")])
    assert result.exit_code == EXIT_FAILURE
    assert result.to_json()["failed"] == 1
    assert MatrixResult(matrix, [built, CellOutcome("24.11-trixie-gpu", "slurm", "reused")]).exit_code == 0


# --- Spack cells sharing the mirror they publish to -----------------------------------------------------------------


def _shared_mirror(tmp_path: Path) -> dict[str, Any]:
    """Spack cells that publish their dependencies to the mirror they install binaries from."""
    mirror = tmp_path / "spack-mirror"
    mirror.mkdir(exist_ok=True)
    return {
        "buildcache": "deps",
        "buildcache_url": mirror.as_uri(),
        "publish": "deps",
        "publish_url": mirror.as_uri() + "/",
        "signing_key": "0x0123456789ABCDEF",
    }


def _shared_mirror_matrix(settings: Settings, **shared: Any) -> Any:
    cells = expand({"slurm_version": ("24.11", "25.11"), "toolchain": ("noble", "jammy")}, shared)
    return plan_matrix(cells, settings)


@pytest.mark.parametrize("mirror", ["a file:// URL", "the local buildcache"])
def test_cells_sharing_a_mirror_they_publish_to_go_after_the_first_of_their_toolchain(
    settings: Settings, tmp_path: Path, mirror: str
) -> None:
    shared = _shared_mirror(tmp_path)
    if mirror == "the local buildcache":  # no URL: both publish to and read from the home's buildcache
        del shared["buildcache_url"], shared["publish_url"]
    matrix = _shared_mirror_matrix(settings, **shared)
    assert {planned.name: planned.cell.after for planned in matrix.cells} == {
        "24.11-noble": (),
        "24.11-jammy": (),
        "25.11-noble": ("24.11-noble",),
        "25.11-jammy": ("24.11-jammy",),
    }
    assert all(planned.cell.needs == () for planned in matrix.cells)


@pytest.mark.parametrize("change", ["another publish mirror", "no buildcache", "native"])
def test_cells_that_do_not_read_what_they_publish_start_together(
    settings: Settings, tmp_path: Path, change: str
) -> None:
    shared = _shared_mirror(tmp_path)
    if change == "another publish mirror":
        (tmp_path / "other").mkdir()
        shared["publish_url"] = (tmp_path / "other").as_uri()
    elif change == "no buildcache":
        shared["buildcache"] = "none"
        del shared["buildcache_url"]
    else:
        shared = {"engine": "native"}
    matrix = _shared_mirror_matrix(settings, **shared)
    assert all(planned.cell.after == () for planned in matrix.cells)


def test_a_failed_first_cell_does_not_skip_the_cells_after_it(settings: Settings, tmp_path: Path) -> None:
    launcher = _ScriptedLauncher(failing=frozenset({"24.11-noble"}))
    outcomes = run_matrix(
        _shared_mirror_matrix(settings, **_shared_mirror(tmp_path)), launcher, 4, listener=QuietListener()
    )
    states = {outcome.name: outcome.state for outcome in outcomes}
    assert states == {"24.11-noble": "failed", "24.11-jammy": "built", "25.11-noble": "built", "25.11-jammy": "built"}
    assert launcher.started.index("25.11-noble") > launcher.started.index("24.11-noble")
    assert launcher.most_at_once == 2


def test_a_signal_during_a_removal_takes_effect_once_the_removal_is_done() -> None:
    import os
    import signal

    from slurm_factory.docker_engine import interrupts_deferred

    steps: list[str] = []
    previous = signal.signal(signal.SIGTERM, lambda *_: steps.append("handled"))
    try:
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)  # a burst of one signal is one interruption
            steps.append("removed")
        assert steps == ["removed", "handled"]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_cell_is_interrupted_by_the_first_sigterm_of_a_burst_only() -> None:
    import os
    import signal

    from slurm_factory.matrix.cell_process import _interrupt_once

    previous = signal.signal(signal.SIGTERM, _interrupt_once)
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # ignored: the unwinding goes on
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)
