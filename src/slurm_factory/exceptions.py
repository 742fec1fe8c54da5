"""The one exception hierarchy of slurm-factory.

Each class knows its process exit code, so the CLI maps failures to exit codes in exactly one place
(`SlurmFactoryError.exit_code`). A `hint` is a short next step printed under the one-line error.
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class SlurmFactoryError(Exception):
    """Base class: a failure slurm-factory understands and can explain in one line."""

    exit_code: int = EXIT_FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigurationError(SlurmFactoryError):
    """The request is invalid or impossible; raised before any container starts (exit 2)."""

    exit_code = EXIT_USAGE


class SourceChecksumError(ConfigurationError):
    """A Slurm source tarball does not match the release's known sha256; nothing was compiled."""


class PatchRejectedError(ConfigurationError):
    """A `--patch` does not apply to the release's source; found on the host before any container started."""


class DockerError(SlurmFactoryError):
    """The Docker engine is unreachable or a Docker operation failed (exit 1)."""


class ClusterError(SlurmFactoryError):
    """The Dask cluster of a distributed build matrix is unreachable or cannot build (exit 1)."""


class BuildError(SlurmFactoryError):
    """The build itself failed; `log_path` holds the full log (exit 1)."""

    def __init__(
        self, message: str, *, log_path: Path | None = None, hint: str | None = None, tail: list[str] | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.log_path = log_path
        self.tail = tail or []


class VerificationError(SlurmFactoryError):
    """The artifact did not pass verification (exit 1); `report_path` holds the evidence."""

    def __init__(self, message: str, *, report_path: Path | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.report_path = report_path


def quoted(value: object, limit: int = 200) -> str:
    """User input echoed in an error message: quoted, and shortened so that a 5,000-character path stays one line."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 40]}…{text[-24:]} ({len(text) - 2} characters)"
