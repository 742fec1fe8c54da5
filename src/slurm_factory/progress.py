"""Progress and logs: every line of a build goes to its log file; a display shows the stage and the latest line.

Build scripts announce stages with `==> slurm-factory stage: NAME` lines; the monitor turns them into stage
changes and records how long each stage took.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

STAGE_MARKER = "==> slurm-factory stage: "


class Display(Protocol):
    def stage(self, name: str) -> None: ...

    def output(self, line: str) -> None: ...

    def close(self) -> None: ...


class SilentDisplay:
    """For the Python API and `--json`: nothing on the terminal, everything in the log."""

    def stage(self, name: str) -> None:
        return None

    def output(self, line: str) -> None:
        return None

    def close(self) -> None:
        return None


class RichDisplay:
    """A spinner with the current stage, its elapsed time and the build's latest output line (on stderr)."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[stage]:<16}"),
            TimeElapsedColumn(),
            TextColumn("[dim]{task.fields[last]}"),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None
        self._running = False

    def stage(self, name: str) -> None:
        if not self._running:  # (re)started lazily: one display can serve the build and then its verification
            self._progress.start()
            self._running = True
        if self._task is not None:
            self._progress.update(self._task, last="done")
            self._progress.stop_task(self._task)
        self._task = self._progress.add_task(name, stage=name, last="")

    def output(self, line: str) -> None:
        if self._task is not None:
            self._progress.update(self._task, last=line[:90])

    def close(self) -> None:
        if self._task is not None:
            self._progress.update(self._task, last="done")
            self._task = None
        if self._running:
            self._progress.stop()
            self._running = False


class BuildMonitor:
    """Writes the full build log and drives the display; measures each stage."""

    def __init__(self, log_path: Path, display: Display) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self._log: IO[str] = log_path.open("w", encoding="utf-8")
        self._display = display
        self._current: str | None = None
        self._started = 0.0
        self.durations: dict[str, float] = {}
        self._tail: list[str] = []

    def __enter__(self) -> BuildMonitor:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def stage(self, name: str) -> None:
        self._finish_stage()
        self._current = name
        self._started = time.monotonic()
        self._write(f"{STAGE_MARKER}{name}")
        self._display.stage(name)

    def output(self, line: str) -> None:
        """One line of build output; stage markers from build scripts start a new stage."""
        if line.startswith(STAGE_MARKER):
            self.stage(line.removeprefix(STAGE_MARKER).strip())
            return
        self._write(line)
        self._tail = [*self._tail[-39:], line]
        self._display.output(line)

    def note(self, line: str) -> None:
        """A line of our own (not build output) for the log."""
        self._write(f"slurm-factory: {line}")

    def tail(self, count: int = 20) -> list[str]:
        return self._tail[-count:]

    def close(self) -> None:
        self._finish_stage()
        self._display.close()
        if not self._log.closed:
            self._log.close()

    def _finish_stage(self) -> None:
        if self._current is not None:
            self.durations[self._current] = round(
                self.durations.get(self._current, 0.0) + time.monotonic() - self._started, 3
            )
            self._current = None

    def _write(self, line: str) -> None:
        if not self._log.closed:
            self._log.write(line + "\n")
            self._log.flush()
