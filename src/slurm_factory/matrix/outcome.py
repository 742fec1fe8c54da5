"""What became of each cell, and how the matrix reports it (live table, summary, `--json`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from slurm_factory.matrix.cell_process import CellRun

State = Literal["pending", "running", "built", "reused", "failed", "cancelled", "skipped"]
SUCCEEDED: tuple[State, ...] = ("built", "reused")


@dataclass
class CellOutcome:
    """One cell's end: its artifact, time and verification, or why it failed (and where its log is)."""

    name: str
    kind: str
    state: State
    seconds: float = 0.0
    artifact: Path | None = None
    sha256: str | None = None
    verified: bool | None = None
    reason: str | None = None
    hint: str | None = None
    log: str | None = None
    where: str = "local"
    attempts: int = 1
    # What the cell's build returned (`build-slurm --json`): manifest, verification report, durations.
    result: dict[str, Any] | None = None

    @property
    def succeeded(self) -> bool:
        return self.state in SUCCEEDED

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "state": self.state,
            "seconds": self.seconds,
            "artifact": str(self.artifact) if self.artifact else None,
            "sha256": self.sha256,
            "verified": self.verified,
            "reason": self.reason,
            "hint": self.hint,
            "log": self.log,
            "where": self.where,
            "attempts": self.attempts,
            "result": self.result,
        }


def outcome_of(name: str, kind: str, run: CellRun, *, where: str = "local") -> CellOutcome:
    """Read a cell process's result or error into an outcome."""
    if run.result is not None and run.exit_code == 0:
        result = run.result
        verification = result.get("verification")
        artifact = result.get("artifact")
        return CellOutcome(
            name,
            kind,
            "reused" if result.get("reused") else "built",
            run.seconds,
            Path(artifact) if artifact else None,
            result.get("sha256"),
            bool(verification.get("passed")) if isinstance(verification, dict) else None,
            log=result.get("log"),
            where=where,
            result=result,
        )
    error = run.error or {}
    interrupted = error.get("kind") == "Interrupted" or run.exit_code in (130, -2, -15)
    reason = error.get("message") or _died(run)
    return CellOutcome(
        name,
        kind,
        "cancelled" if interrupted else "failed",
        run.seconds,
        reason=reason,
        hint=error.get("hint"),
        log=error.get("log") or (str(run.stderr_path) if run.stderr_path else None),
        where=where,
    )


def _died(run: CellRun) -> str:
    stage = run.stages[-1] if run.stages else "start"
    return f"the cell's process ended with exit code {run.exit_code} during {stage} and reported nothing"


class Listener(Protocol):
    """Follows the cells as they run (the live table; nothing for `--json`)."""

    def started(self, name: str, where: str) -> None: ...

    def event(self, name: str, event: dict[str, Any]) -> None: ...

    def finished(self, outcome: CellOutcome) -> None: ...


class QuietListener:
    def started(self, name: str, where: str) -> None:
        return None

    def event(self, name: str, event: dict[str, Any]) -> None:
        return None

    def finished(self, outcome: CellOutcome) -> None:
        return None
