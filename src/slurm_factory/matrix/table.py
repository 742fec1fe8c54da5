"""The live table of a running matrix (every cell's state, stage, time and latest line) and its final summary."""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from slurm_factory.matrix.cells import Matrix
from slurm_factory.matrix.outcome import CellOutcome

STATE_STYLES = {
    "pending": "dim",
    "running": "bold yellow",
    "built": "green",
    "reused": "green",
    "failed": "bold red",
    "cancelled": "red",
    "skipped": "red",
}


class _Row:
    def __init__(self, name: str) -> None:
        self.name = name
        self.state = "pending"
        self.stage = ""
        self.where = ""
        self.last = ""
        self.started: float | None = None
        self.seconds: float | None = None


class LiveTable:
    """A `Listener` that redraws the table on stderr as cells start, change stage and end."""

    def __init__(self, console: Console, matrix: Matrix) -> None:
        self._rows = {name: _Row(name) for name in matrix.names()}
        self._lock = threading.Lock()
        self._live = Live(self._render(), console=console, refresh_per_second=2, transient=False)

    def __enter__(self) -> LiveTable:
        self._live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._refresh()
        self._live.stop()

    def started(self, name: str, where: str) -> None:
        with self._lock:
            row = self._rows[name]
            row.state, row.where, row.started = "running", where, time.monotonic()
        self._refresh()

    def event(self, name: str, event: dict[str, Any]) -> None:
        with self._lock:
            row = self._rows[name]
            if event["event"] == "stage":
                row.stage, row.last = str(event.get("stage", "")), ""
            elif event["event"] == "output":
                row.last = str(event.get("line", ""))
            elif event["event"] == "worker":  # a cluster's worker took the cell (again, after a lost worker)
                row.where, row.stage, row.last = str(event.get("worker_name", "")), "starting", ""
        self._refresh()

    def finished(self, outcome: CellOutcome) -> None:
        with self._lock:
            row = self._rows[outcome.name]
            row.state, row.seconds, row.where = outcome.state, outcome.seconds, outcome.where or row.where
            row.last = outcome.reason or (str(outcome.artifact.name) if outcome.artifact else "")
        self._refresh()

    def _refresh(self) -> None:
        with self._lock:
            table = self._render()
        self._live.update(table)

    def _render(self) -> Table:
        table = Table(expand=False)
        for column in ("cell", "state", "stage", "time", "where", "latest"):
            table.add_column(column, overflow="ellipsis", no_wrap=True, max_width=60 if column == "latest" else None)
        now = time.monotonic()
        for row in self._rows.values():
            seconds = row.seconds if row.seconds is not None else (now - row.started if row.started else None)
            table.add_row(
                row.name,
                Text(row.state, style=STATE_STYLES.get(row.state, "")),
                row.stage,
                f"{seconds:.0f}s" if seconds is not None else "",
                row.where,
                Text(row.last),
            )
        return table


def print_summary(console: Console, outcomes: list[CellOutcome], seconds: float) -> None:
    """Each cell's artifact, time and verification; for a failure the reason and the log."""
    console.rule("build-matrix")
    for outcome in outcomes:
        head = Text(f"{outcome.state:<9} ", style=STATE_STYLES.get(outcome.state, "")) + Text(
            f"{outcome.name}  {outcome.seconds:.0f}s"
        )
        if outcome.where != "local":
            head += Text(f"  on {outcome.where}" + (f" (try {outcome.attempts})" if outcome.attempts > 1 else ""))
        console.print(head, highlight=False)
        if outcome.artifact is not None:
            verified = {True: "verified", False: "verification FAILED", None: "not verified"}[outcome.verified]
            console.print(f"          {outcome.artifact}  {verified}", highlight=False, markup=False)
        if outcome.reason and not outcome.succeeded:
            console.print(Text(f"          {outcome.reason}"), highlight=False)
        if outcome.log and not outcome.succeeded:
            console.print(f"          log: {outcome.log}", highlight=False, markup=False)
    failed = sum(not outcome.succeeded for outcome in outcomes)
    console.print(
        f"{len(outcomes) - failed} of {len(outcomes)} cells succeeded in {seconds:.0f}s", highlight=False, markup=False
    )
