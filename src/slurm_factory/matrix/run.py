"""`build_matrix()`: validate every cell, then run them on this host's Docker engine (`jobs` at once) or on a Dask
cluster (`scheduler`).

The Python API of `slurm-factory build-matrix`. Bad input in any cell raises `ConfigurationError` before any cell
starts; a failed cell is an outcome, not an exception (the others still build).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slurm_factory.config import Settings
from slurm_factory.exceptions import EXIT_FAILURE, ConfigurationError, quoted
from slurm_factory.matrix.cells import Cell, Matrix, plan_matrix
from slurm_factory.matrix.outcome import CellOutcome, Listener, QuietListener
from slurm_factory.matrix.schedule import Launcher, LocalLauncher, run_matrix

# More cells at once than this on one Docker engine is a typo (each compiles with all cores).
MAX_LOCAL_JOBS = 64
# On a cluster, how many cells are sent at once (the workers' threads decide how many build at once).
MAX_CLUSTER_JOBS = 4096


@dataclass
class MatrixResult:
    """The matrix as planned and, unless it was a dry run, each cell's outcome."""

    matrix: Matrix
    outcomes: list[CellOutcome] = field(default_factory=list)
    seconds: float = 0.0
    jobs: int = 1
    logs: Path | None = None
    scheduler: str | None = None

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
                "after": list(planned.cell.after),
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
            "scheduler": self.scheduler,
            "seconds": self.seconds,
            "logs": str(self.logs) if self.logs else None,
            "succeeded": len(self.outcomes) - len(self.failed),
            "failed": len(self.failed),
            "cells": cells,
        }


def check_jobs(jobs: object, scheduler: str | None = None) -> int:
    limit = MAX_CLUSTER_JOBS if scheduler else MAX_LOCAL_JOBS
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= limit:
        where = "sent to the cluster" if scheduler else "built"
        raise ConfigurationError(f"--jobs {quoted(jobs)}: give the number of cells {where} at once, 1 to {limit}")
    return jobs


def build_matrix(
    cells: Sequence[Cell],
    *,
    settings: Settings | None = None,
    jobs: int | None = None,
    scheduler: str | None = None,
    dry_run: bool = False,
    listener: Listener | None = None,
) -> MatrixResult:
    """Plan every cell (all refused at once if any is invalid), then build them; see the module's docstring.

    `jobs`: cells at once (default 1 on this host; on a cluster every ready cell is sent and each worker builds as
    many at once as it has threads). `scheduler`: `tcp://HOST:PORT` of a Dask scheduler."""
    settings = settings or Settings()
    if scheduler is not None:
        from slurm_factory.matrix.distributed import check_scheduler, refuse_secrets_in_clear

        scheduler = check_scheduler(scheduler)
        refuse_secrets_in_clear(scheduler, cells)
    if jobs is not None:
        jobs = check_jobs(jobs, scheduler)
    if not cells:
        raise ConfigurationError("the matrix has no cells")
    matrix = plan_matrix(cells, settings)
    if jobs is None:
        jobs = max(len(matrix), 1) if scheduler else 1
    result = MatrixResult(matrix, jobs=jobs, scheduler=scheduler)
    if dry_run:
        return result
    settings.ensure_dirs()
    result.logs = _matrix_logs(settings)
    listener = listener or QuietListener()
    with _launcher(settings, matrix, result.logs, scheduler=scheduler) as launcher:
        started = time.monotonic()
        try:
            result.outcomes = run_matrix(matrix, launcher, jobs, listener=listener)
        finally:
            result.seconds = round(time.monotonic() - started, 3)
    return result


@contextlib.contextmanager
def _launcher(settings: Settings, matrix: Matrix, logs: Path, *, scheduler: str | None) -> Iterator[Launcher]:
    """This host's launcher, or a Dask cluster's (connected and every worker checked before a cell is sent)."""
    if scheduler is None:
        yield LocalLauncher(settings.project_name, logs)
        return
    from slurm_factory.matrix.distributed import dask_launcher

    client, launcher = dask_launcher(scheduler, matrix, settings.project_name, builds_dir=settings.builds_dir)
    try:
        yield launcher
    finally:
        launcher.close()
        client.close()


def _matrix_logs(settings: Settings) -> Path:
    """`logs/matrix-<UTC time>-<pid>/`: each cell's standard error (its build log is in logs/ as always)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    directory = settings.logs_dir / f"matrix-{stamp}-{os.getpid()}"
    directory.mkdir(parents=True, exist_ok=True)
    return directory
