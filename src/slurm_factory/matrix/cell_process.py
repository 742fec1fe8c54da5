"""One matrix cell in its own process: `slurm-factory cell` (hidden) reads the cell as JSON on standard input and
writes JSON lines (its stages, then its result or its error) on standard output.

A process per cell gives each build what a single `build-slurm` has: its own signal handling (SIGINT and SIGTERM
remove its containers), its own Docker session and log, and a death that cannot take the others with it. The cell
travels on standard input, never in argv: it may carry a GPG passphrase.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from slurm_factory.exceptions import BuildError, SlurmFactoryError
from slurm_factory.matrix.cells import Cell

# How often the child reports the build's latest output line (the table shows it; every line would flood the pipe).
OUTPUT_INTERVAL = 2.0
# SIGINT first (the child removes its containers); SIGKILL only if it has not ended after this long.
STOP_GRACE = 180.0
# The pid of the process that started the cell (the child checks it is still its parent).
PARENT_VARIABLE = "SLURM_FACTORY_CELL_PARENT"


class EventDisplay:
    """The child's `Display`: stage changes and, at most every OUTPUT_INTERVAL, the latest line, as JSON lines."""

    def __init__(self, stream: IO[str], *, orphaned: IO[str] | None = None) -> None:
        self._stream = stream
        self._orphaned = orphaned  # where events go once nobody reads `stream` (default: stderr, the cell's log)
        self._lock = threading.Lock()
        self._last_output = 0.0
        self._closed = False

    def emit(self, event: dict[str, Any]) -> None:
        """Write one event; once the reader is gone (its process died) the build goes on unwinding, and its stages
        and its end (not its output lines) go to the cell's stderr log instead."""
        with self._lock:
            if not self._closed:
                try:
                    self._stream.write(json.dumps(event) + "\n")
                    self._stream.flush()
                    return
                except OSError:  # BrokenPipeError: nobody reads any more
                    self._closed = True
            if event.get("event") != "output":
                with contextlib.suppress(OSError, ValueError):
                    log = self._orphaned or sys.stderr
                    log.write(f"slurm-factory cell: nobody reads its events any more: {json.dumps(event)}\n")
                    log.flush()

    def stage(self, name: str) -> None:
        self.emit({"event": "stage", "stage": name})

    def output(self, line: str) -> None:
        now = time.monotonic()
        if now - self._last_output >= OUTPUT_INTERVAL:
            self._last_output = now
            self.emit({"event": "output", "line": line[:200]})

    def close(self) -> None:
        return None


def error_event(error: SlurmFactoryError) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event": "error",
        "kind": type(error).__name__,
        "exit_code": error.exit_code,
        "message": error.message,
        "hint": error.hint,
    }
    if isinstance(error, BuildError):
        event["log"] = str(error.log_path) if error.log_path else None
        event["tail"] = list(error.tail)
    return event


def serve_cell(source: IO[str], events: EventDisplay, settings: Any) -> int:
    """The child's side: build the cell read from `source`, report on `events`; the exit code of the build."""
    from slurm_factory.builder import build, build_compiler

    cell = Cell.from_json(json.load(source))
    try:
        if cell.kind == "compiler":
            compiler = build_compiler(**cell.options, settings=settings, display=events)
            events.emit({"event": "result", "result": compiler.to_json()})
        else:
            result = build(**cell.options, settings=settings, display=events)
            events.emit({"event": "result", "result": result.to_json()})
    except SlurmFactoryError as error:
        events.emit(error_event(error))
        return error.exit_code
    return 0


def die_with_parent() -> bool:
    """In the child: SIGTERM when the process that started it dies (a matrix killed outright), so the build
    removes its containers instead of running on unowned. False if that parent is already gone.

    The kernel sends that SIGTERM each time the child is handed on from a thread of the dying parent to the next (one
    per thread of a Dask worker or of a local matrix), a burst within a millisecond or two: only the first one
    interrupts, or the next would stop the unwinding half-way (its build container left running, unowned)."""
    import ctypes

    signal.signal(signal.SIGTERM, _interrupt_once)
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    expected = os.environ.get(PARENT_VARIABLE)
    return expected is None or str(os.getppid()) == expected


def _interrupt_once(signum: int, frame: object) -> None:
    """SIGTERM unwinds the cell as Ctrl-C does (cli.main's handler), and any SIGTERM after it is ignored."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


@dataclass
class CellRun:
    """What the parent learnt from a cell's process."""

    exit_code: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    stages: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stderr_path: Path | None = None


class CellProcess:
    """The parent's side: start `slurm-factory cell`, feed it the cell, follow its events; `stop()` from any thread
    asks it to end (SIGINT, then SIGKILL after STOP_GRACE)."""

    def __init__(self, cell: Cell, project_name: str, stderr_path: Path, *, environment: dict[str, str] | None = None):
        self.cell = cell
        self._project_name = project_name
        self._stderr_path = stderr_path
        self._environment = environment
        self._process: subprocess.Popen[str] | None = None
        self._stopping = threading.Event()

    def run(self, on_event: Callable[[dict[str, Any]], None]) -> CellRun:
        started = time.monotonic()
        run = CellRun(stderr_path=self._stderr_path)
        self._stderr_path.parent.mkdir(parents=True, exist_ok=True)
        with self._stderr_path.open("w", encoding="utf-8") as stderr:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "slurm_factory", "--project-name", self._project_name, "cell"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env={**os.environ, **(self._environment or {}), PARENT_VARIABLE: str(os.getpid())},
                start_new_session=True,  # Ctrl-C reaches the matrix, which stops each cell in order
            )
            assert self._process.stdin is not None and self._process.stdout is not None
            if self._stopping.is_set():
                self._signal(signal.SIGINT)
            self._process.stdin.write(json.dumps(self.cell.to_json()))
            self._process.stdin.close()
            for line in self._process.stdout:
                event = _parse_event(line)
                if event is None:
                    continue
                _record(run, event)
                on_event(event)
            run.exit_code = self._process.wait()
        run.seconds = round(time.monotonic() - started, 3)
        return run

    def stop(self) -> None:
        """Ask the cell to end: its build removes its containers (as on Ctrl-C); killed if it does not end."""
        self._stopping.set()
        if self._process is None or self._process.poll() is not None:
            return
        self._signal(signal.SIGINT)
        threading.Thread(target=self._kill_after_grace, daemon=True).start()

    def _kill_after_grace(self) -> None:
        process = self._process
        if process is None:
            return
        try:
            process.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._process.pid, signum)


def _parse_event(line: str) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def _record(run: CellRun, event: dict[str, Any]) -> None:
    kind = event["event"]
    if kind == "stage":
        run.stages.append(str(event.get("stage")))
    elif kind == "result":
        run.result = event.get("result")
    elif kind == "error":
        run.error = event
