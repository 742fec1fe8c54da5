"""The verification report: each check with pass/fail, seconds and, for failures, the evidence."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from slurm_factory import __version__
from slurm_factory.artifact import write_text_atomically


@dataclass
class CheckResult:
    name: str
    passed: bool
    seconds: float
    summary: str
    evidence: list[str] = field(default_factory=list)
    # A stage that could not start (Docker unreachable, an unsafe tarball): not passed, and not a failure of the
    # artifact either; `summary` says why.
    not_run: bool = False


@dataclass
class VerificationReport:
    artifact: str
    sha256: str
    started_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat())
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    @property
    def failures(self) -> list[CheckResult]:
        return [check for check in self.checks if not check.passed and not check.not_run]

    @property
    def not_run(self) -> list[CheckResult]:
        return [check for check in self.checks if check.not_run]

    def mark_not_run(self, names: tuple[str, ...], reason: str) -> None:
        self.checks.extend(
            CheckResult(name, passed=False, seconds=0.0, summary=f"not run: {reason}", not_run=True) for name in names
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact,
            "sha256": self.sha256,
            "started_at": self.started_at,
            "tool": {"name": "slurm-factory", "version": __version__},
            "passed": self.passed,
            "seconds": round(sum(check.seconds for check in self.checks), 3),
            "checks": [asdict(check) for check in self.checks],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VerificationReport:
        checks = [CheckResult(**entry) for entry in data["checks"]]
        return cls(artifact=data["artifact"], sha256=data["sha256"], started_at=data["started_at"], checks=checks)

    def write(self, path: Path) -> None:
        """Atomically: a symlink planted where the report goes is replaced, never followed."""
        write_text_atomically(path, json.dumps(self.to_json(), indent=2) + "\n")

    def print_summary(self, console: Console) -> None:
        table = Table(title=f"Verification of {self.artifact}")
        for column in ("check", "result", "seconds", "details"):
            table.add_column(column)
        for check in self.checks:
            result = (
                "[green]pass[/]" if check.passed else "[yellow]not run[/]" if check.not_run else "[bold red]FAIL[/]"
            )
            details = check.summary if check.passed else "\n".join([check.summary, *check.evidence[:12]])
            table.add_row(check.name, result, f"{check.seconds:.1f}", details)
        console.print(table)


class CheckRecorder:
    """Times one check and records it in the report; a check passes unless it calls `fail`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.summary = ""
        self.evidence: list[str] = []
        self.failed = False

    def fail(self, summary: str, evidence: list[str] | None = None) -> None:
        self.failed = True
        self.summary = summary
        self.evidence.extend(evidence or [])

    def ok(self, summary: str) -> None:
        if not self.failed:
            self.summary = summary


@contextmanager
def check(report: VerificationReport, name: str) -> Iterator[CheckRecorder]:
    """Run one named check; an exception inside it is a failure with its message as evidence."""
    recorder = CheckRecorder(name)
    started = time.monotonic()
    try:
        yield recorder
    except Exception as error:  # the check failed in a way it did not anticipate: record, do not hide
        recorder.fail(f"{name} could not complete", [f"{type(error).__name__}: {error}"])
    finally:
        report.checks.append(
            CheckResult(
                name=name,
                passed=not recorder.failed,
                seconds=round(time.monotonic() - started, 3),
                summary=recorder.summary,
                evidence=recorder.evidence,
            )
        )
