"""BuildMonitor: stage markers in build output start stages, each stage's duration is measured, every line reaches the
log file, and the tail keeps the latest lines for error messages."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from slurm_factory import progress
from slurm_factory.progress import STAGE_MARKER, BuildMonitor, SilentDisplay


class _Clock:
    """A monotonic clock the test advances by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class _RecordingDisplay:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.closed = 0

    def stage(self, name: str) -> None:
        self.events.append(("stage", name))

    def output(self, line: str) -> None:
        self.events.append(("output", line))

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


@pytest.fixture
def display() -> _RecordingDisplay:
    return _RecordingDisplay()


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "build.log"


def _log_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_stage_marker_in_output_starts_that_stage(log_path: Path, display: _RecordingDisplay) -> None:
    with BuildMonitor(log_path, display) as monitor:
        monitor.output("checking for gcc... gcc")
        monitor.output("==> slurm-factory stage: compile")
        monitor.output("CC slurmctld.o")

    assert display.events == [
        ("output", "checking for gcc... gcc"),
        ("stage", "compile"),
        ("output", "CC slurmctld.o"),
    ]
    assert list(monitor.durations) == ["compile"]


def test_stage_marker_name_is_stripped_of_surrounding_whitespace(log_path: Path, display: _RecordingDisplay) -> None:
    with BuildMonitor(log_path, display) as monitor:
        monitor.output(f"{STAGE_MARKER}install  \r")

    assert display.events == [("stage", "install")]
    assert list(monitor.durations) == ["install"]


def test_marker_text_inside_a_line_is_not_a_stage(log_path: Path, display: _RecordingDisplay) -> None:
    with BuildMonitor(log_path, display) as monitor:
        monitor.output(f"echo '{STAGE_MARKER}compile'")

    assert display.events == [("output", f"echo '{STAGE_MARKER}compile'")]
    assert monitor.durations == {}


def test_durations_are_recorded_per_stage(log_path: Path, clock: _Clock) -> None:
    with BuildMonitor(log_path, SilentDisplay()) as monitor:
        monitor.stage("source")
        clock.advance(2.5)
        monitor.output(f"{STAGE_MARKER}configure")
        clock.advance(10)
        monitor.output("checking for munge... yes")
        clock.advance(5)
        monitor.output(f"{STAGE_MARKER}compile")
        clock.advance(42.125)

    assert monitor.durations == {"source": 2.5, "configure": 15.0, "compile": 42.125}


def test_a_stage_entered_twice_accumulates_its_duration(log_path: Path, clock: _Clock) -> None:
    with BuildMonitor(log_path, SilentDisplay()) as monitor:
        monitor.stage("compile")
        clock.advance(3)
        monitor.stage("collect")
        clock.advance(1)
        monitor.stage("compile")
        clock.advance(4)

    assert monitor.durations == {"compile": 7.0, "collect": 1.0}


def test_time_before_the_first_stage_and_after_close_is_not_counted(log_path: Path, clock: _Clock) -> None:
    monitor = BuildMonitor(log_path, SilentDisplay())
    clock.advance(100)
    monitor.stage("image")
    clock.advance(6)
    monitor.close()
    clock.advance(50)
    monitor.close()

    assert monitor.durations == {"image": 6.0}


def test_every_line_is_written_to_the_log_file(log_path: Path, display: _RecordingDisplay) -> None:
    with BuildMonitor(log_path, display) as monitor:
        monitor.note("build 0123: Slurm 24.11.5 for trixie")
        monitor.stage("source")
        monitor.output("line one")
        monitor.output(f"{STAGE_MARKER}compile")
        monitor.output("line two")
        monitor.output("")

    assert _log_lines(log_path) == [
        "slurm-factory: build 0123: Slurm 24.11.5 for trixie",
        f"{STAGE_MARKER}source",
        "line one",
        f"{STAGE_MARKER}compile",
        "line two",
        "",
    ]


def test_log_is_readable_while_the_build_runs(log_path: Path) -> None:
    with BuildMonitor(log_path, SilentDisplay()) as monitor:
        monitor.output("first line")

        assert _log_lines(log_path) == ["first line"]


def test_log_directory_is_created(tmp_path: Path) -> None:
    log_path = tmp_path / "deep" / "logs" / "x.log"

    with BuildMonitor(log_path, SilentDisplay()) as monitor:
        monitor.output("hello")

    assert _log_lines(log_path) == ["hello"]
    assert monitor.log_path == log_path


def test_log_is_rewritten_for_a_new_build(log_path: Path) -> None:
    with BuildMonitor(log_path, SilentDisplay()) as first:
        first.output("from the first build")

    with BuildMonitor(log_path, SilentDisplay()) as second:
        second.output("from the second build")

    assert _log_lines(log_path) == ["from the second build"]


def test_lines_after_close_are_dropped_without_error(log_path: Path) -> None:
    monitor = BuildMonitor(log_path, SilentDisplay())
    monitor.output("kept")
    monitor.close()

    monitor.output("after close")
    monitor.note("after close")

    assert _log_lines(log_path) == ["kept"]


def test_tail_returns_the_last_lines_of_output(log_path: Path) -> None:
    with BuildMonitor(log_path, SilentDisplay()) as monitor:
        for number in range(10):
            monitor.output(f"line {number}")

        assert monitor.tail(3) == ["line 7", "line 8", "line 9"]
        assert monitor.tail() == [f"line {number}" for number in range(10)]


def test_tail_leaves_out_stage_markers_and_notes(log_path: Path) -> None:
    with BuildMonitor(log_path, SilentDisplay()) as monitor:
        monitor.output("configure output")
        monitor.output(f"{STAGE_MARKER}compile")
        monitor.note("our own note")
        monitor.output("make: *** [all] Error 2")

        assert monitor.tail(5) == ["configure output", "make: *** [all] Error 2"]


def test_tail_keeps_at_most_the_last_40_lines(log_path: Path) -> None:
    with BuildMonitor(log_path, SilentDisplay()) as monitor:
        for number in range(100):
            monitor.output(f"line {number}")

        assert monitor.tail(1000) == [f"line {number}" for number in range(60, 100)]
        assert monitor.tail(20) == [f"line {number}" for number in range(80, 100)]

    assert len(_log_lines(log_path)) == 100


def test_tail_of_a_quiet_build_is_empty(log_path: Path) -> None:
    with BuildMonitor(log_path, SilentDisplay()) as monitor:
        assert monitor.tail() == []


def test_display_is_closed_once_when_the_monitor_exits(log_path: Path, display: _RecordingDisplay) -> None:
    with BuildMonitor(log_path, display):
        pass

    assert display.closed == 1


def test_monitor_exit_on_error_still_records_the_stage_and_closes_the_log(
    log_path: Path, display: _RecordingDisplay, clock: _Clock
) -> None:
    with pytest.raises(RuntimeError), BuildMonitor(log_path, display) as monitor:
        monitor.stage("compile")
        monitor.output("error: something broke")
        clock.advance(9)
        raise RuntimeError("build failed")

    assert monitor.durations == {"compile": 9.0}
    assert display.closed == 1
    assert _log_lines(log_path)[-1] == "error: something broke"
