"""Running a matrix's cells in order: a cell starts once the cells it needs have succeeded (it is skipped if one
failed) and the cells it comes after have ended, at most `jobs` at once; a failed cell never stops the others.
Ctrl-C stops every running cell (each removes its containers) and cancels the rest.

Where a cell runs is the launcher's business (`LocalLauncher`: a process on this host).
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from slurm_factory.matrix.cell_process import CellProcess
from slurm_factory.matrix.cells import Matrix, PlannedCell
from slurm_factory.matrix.outcome import CellOutcome, Listener, outcome_of


class Launcher(Protocol):
    """Runs one cell to its end (blocking; called on a thread of its own) and can be told to stop them all."""

    def run_cell(self, planned: PlannedCell, on_event: Callable[[dict[str, Any]], None]) -> CellOutcome: ...

    def stop_all(self) -> None: ...

    def where(self) -> str: ...


class LocalLauncher:
    """Each cell as a `slurm-factory cell` process on this host, against this host's Docker engine and home."""

    def __init__(self, project_name: str, cell_logs: Path) -> None:
        self._project_name = project_name
        self._cell_logs = cell_logs
        self._running: dict[str, CellProcess] = {}
        self._lock = threading.Lock()
        self._stopped = False

    def where(self) -> str:
        return "local"

    def run_cell(self, planned: PlannedCell, on_event: Callable[[dict[str, Any]], None]) -> CellOutcome:
        process = CellProcess(planned.cell, self._project_name, self._cell_logs / f"{planned.name}.stderr")
        with self._lock:
            self._running[planned.name] = process
            if self._stopped:
                process.stop()
        try:
            run = process.run(on_event)
        finally:
            with self._lock:
                self._running.pop(planned.name, None)
        return outcome_of(planned.name, planned.cell.kind, run)

    def stop_all(self) -> None:
        with self._lock:
            self._stopped = True
            running = list(self._running.values())
        for process in running:
            process.stop()


def run_matrix(matrix: Matrix, launcher: Launcher, jobs: int, *, listener: Listener) -> list[CellOutcome]:
    """Every cell's outcome, in the matrix's order. KeyboardInterrupt is re-raised after every cell has ended."""
    outcomes: dict[str, CellOutcome] = {}
    pending = list(matrix.cells)
    running: dict[concurrent.futures.Future[CellOutcome], PlannedCell] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="cell") as pool:
        try:
            while pending or running:
                pending = _skip_orphans(pending, outcomes, listener)
                for planned in _ready(pending, outcomes, jobs - len(running)):
                    pending.remove(planned)
                    listener.started(planned.name, launcher.where())
                    future = pool.submit(_run_one, launcher, planned, listener)
                    running[future] = planned
                if not running:  # nothing runs and nothing could start: the rest need cells that are not there
                    for planned in pending:
                        outcome = CellOutcome(
                            planned.name, planned.cell.kind, "skipped", reason="a needed cell is missing"
                        )
                        outcomes[planned.name] = outcome
                        listener.finished(outcome)
                    pending = []
                    continue
                done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    outcome = future.result()
                    outcomes[running.pop(future).name] = outcome
                    listener.finished(outcome)
        except KeyboardInterrupt:
            launcher.stop_all()
            for future, planned in running.items():
                outcome = future.result()  # each stops within its grace period
                outcomes[planned.name] = outcome
                listener.finished(outcome)
            for planned in pending:
                outcomes[planned.name] = CellOutcome(planned.name, planned.cell.kind, "cancelled", reason="interrupted")
            raise
    return [outcomes[planned.name] for planned in matrix.cells]


def _run_one(launcher: Launcher, planned: PlannedCell, listener: Listener) -> CellOutcome:
    try:
        return launcher.run_cell(planned, lambda event: listener.event(planned.name, event))
    except Exception as error:  # a launcher's own failure is this cell's, not the matrix's
        return CellOutcome(planned.name, planned.cell.kind, "failed", reason=f"{type(error).__name__}: {error}")


def _ready(pending: list[PlannedCell], outcomes: dict[str, CellOutcome], free: int) -> list[PlannedCell]:
    ready = [
        planned for planned in pending if all(name in outcomes for name in (*planned.cell.needs, *planned.cell.after))
    ]
    return ready[: max(free, 0)]


def _skip_orphans(
    pending: list[PlannedCell], outcomes: dict[str, CellOutcome], listener: Listener
) -> list[PlannedCell]:
    """A cell whose needed cell failed is skipped, with the reason."""
    kept = []
    for planned in pending:
        failed = [need for need in planned.cell.needs if need in outcomes and not outcomes[need].succeeded]
        if not failed:
            kept.append(planned)
            continue
        outcome = CellOutcome(planned.name, planned.cell.kind, "skipped", reason=f"{failed[0]} did not succeed")
        outcomes[planned.name] = outcome
        listener.finished(outcome)
    return kept
