"""`build_matrix()`: validate every cell, then run them on this host's Docker engine, `jobs` at once.

The Python API of `slurm-factory build-matrix`. Bad input in any cell raises `ConfigurationError` before any cell
starts; a failed cell is an outcome, not an exception (the others still build).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slurm_factory.config import Settings
from slurm_factory.exceptions import EXIT_FAILURE, ConfigurationError, quoted
from slurm_factory.matrix.cells import Cell, Matrix, plan_matrix
from slurm_factory.matrix.outcome import CellOutcome, Listener, QuietListener
from slurm_factory.matrix.schedule import LocalLauncher, run_matrix

# More cells at once than this on one Docker engine is a typo (each compiles with all cores).
MAX_LOCAL_JOBS = 64


@dataclass
class MatrixResult:
    """The matrix as planned and, unless it was a dry run, each cell's outcome."""

    matrix: Matrix
    outcomes: list[CellOutcome] = field(default_factory=list)
    seconds: float = 0.0
    jobs: int = 1
    logs: Path | None = None

    @property
    def dry_run(self) -> bool:
        return not self.outcomes

    @property
    def failed(self) -> list[CellOutcome]:
        return [outcome for outcome in self.outcomes if not outcome.succeeded]

    @property
    def exit_code(self) -> int:
        return EXIT_FAILURE if self.failed else 0

    def to_json(self) -> dict[str, Any]:
        outcomes = {outcome.name: outcome for outcome in self.outcomes}
        cells = []
        for planned in self.matrix.cells:
            entry: dict[str, Any] = {
                "name": planned.name,
                "kind": planned.cell.kind,
                "needs": list(planned.cell.needs),
                "build_id": planned.plan.build_id,
                "image": planned.plan.image.reference,
                "artifact_name": planned.plan.request.artifact_filename,
            }
            if planned.name in outcomes:
                entry.update(outcomes[planned.name].to_json())
            cells.append(entry)
        return {
            "dry_run": self.dry_run,
            "jobs": self.jobs,
            "seconds": self.seconds,
            "logs": str(self.logs) if self.logs else None,
            "succeeded": len(self.outcomes) - len(self.failed),
            "failed": len(self.failed),
            "cells": cells,
        }


def check_jobs(jobs: object) -> int:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= MAX_LOCAL_JOBS:
        raise ConfigurationError(
            f"--jobs {quoted(jobs)}: give the number of cells built at once, 1 to {MAX_LOCAL_JOBS}"
        )
    return jobs


def build_matrix(
    cells: Sequence[Cell],
    *,
    settings: Settings | None = None,
    jobs: int = 1,
    dry_run: bool = False,
    listener: Listener | None = None,
) -> MatrixResult:
    """Plan every cell (all refused at once if any is invalid), then build them; see the module's docstring."""
    settings = settings or Settings()
    jobs = check_jobs(jobs)
    if not cells:
        raise ConfigurationError("the matrix has no cells")
    matrix = plan_matrix(cells, settings)
    result = MatrixResult(matrix, jobs=jobs)
    if dry_run:
        return result
    settings.ensure_dirs()
    result.logs = _matrix_logs(settings)
    launcher = LocalLauncher(settings.project_name, result.logs)
    started = time.monotonic()
    listener = listener or QuietListener()
    try:
        result.outcomes = run_matrix(matrix, launcher, jobs, listener)
    finally:
        result.seconds = round(time.monotonic() - started, 3)
    return result


def _matrix_logs(settings: Settings) -> Path:
    """`logs/matrix-<UTC time>-<pid>/`: each cell's standard error (its build log is in logs/ as always)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    directory = settings.logs_dir / f"matrix-{stamp}-{os.getpid()}"
    directory.mkdir(parents=True, exist_ok=True)
    return directory
