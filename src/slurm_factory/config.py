"""Settings: where slurm-factory keeps its caches and which Docker namespace it owns.

Environment variables give the defaults (`IF_PROJECT_NAME`, `SLURM_FACTORY_HOME`, `SPACK_JOBS`); explicit
arguments win. The cache layout under the home directory is part of the public contract (docs/reference/settings.md).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from slurm_factory.exceptions import ConfigurationError, quoted

DEFAULT_PROJECT_NAME = "slurm-factory"
# More parallel jobs than any build host has cores is a typo, not a setting (make would fork that many).
MAX_JOBS = 4096
PROJECT_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


def _default_project_name() -> str:
    return os.environ.get("IF_PROJECT_NAME") or DEFAULT_PROJECT_NAME


def default_home() -> Path:
    configured = os.environ.get("SLURM_FACTORY_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".slurm-factory"


def _default_jobs() -> int:
    configured = os.environ.get("SPACK_JOBS")
    if configured is None or configured == "":
        return os.cpu_count() or 1
    try:
        jobs = int(configured)
    except ValueError:
        raise ConfigurationError(f"SPACK_JOBS must be a positive integer, not {configured!r}") from None
    if not 1 <= jobs <= MAX_JOBS:
        raise ConfigurationError(f"SPACK_JOBS must be a positive integer up to {MAX_JOBS}, not {quoted(configured)}")
    return jobs


class Settings(BaseModel):
    """Where caches live, how many build jobs run, and the Docker namespace (project) every resource carries."""

    model_config = ConfigDict(frozen=True, validate_default=True, extra="forbid")

    project_name: str = Field(default_factory=_default_project_name)
    home: Path = Field(default_factory=default_home)
    jobs: int = Field(default_factory=_default_jobs, ge=1, le=MAX_JOBS)

    def __init__(self, **values: Any) -> None:
        """Invalid settings raise `ConfigurationError` naming where the value came from, as everything else does."""
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise ConfigurationError(_settings_error(error, values)) from None

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        """A relative home (`SLURM_FACTORY_HOME=relhome`) means relative to where the command runs; Docker bind
        mounts and the artifact's paths need it absolute."""
        return Path(os.path.abspath(value.expanduser()))

    @field_validator("project_name")
    @classmethod
    def _docker_safe_project_name(cls, value: str) -> str:
        if not PROJECT_NAME_PATTERN.fullmatch(value):
            raise ValueError(
                "it must be lowercase letters, digits, '.', '_' or '-', start with a letter or digit, at most 63 chars"
            )
        return value

    @property
    def builds_dir(self) -> Path:
        return self.home / "builds"

    @property
    def buildcache_dir(self) -> Path:
        return self.home / "spack-buildcache"

    @property
    def sourcecache_dir(self) -> Path:
        return self.home / "spack-sourcecache"

    @property
    def binary_index_dir(self) -> Path:
        return self.home / "binary_index"

    @property
    def concretizations_dir(self) -> Path:
        """Spack concretizations (`<key>.lock`), keyed by the toolchain image and every file of the environment."""
        return self.home / "spack-concretizations"

    @property
    def ccache_dir(self) -> Path:
        return self.home / "ccache"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    def cache_dirs(self) -> list[Path]:
        return [
            self.builds_dir,
            self.buildcache_dir,
            self.sourcecache_dir,
            self.binary_index_dir,
            self.concretizations_dir,
            self.ccache_dir,
            self.logs_dir,
        ]

    def ensure_dirs(self) -> None:
        for directory in self.cache_dirs():
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise ConfigurationError(
                    f"cannot create {directory}: {error.strerror}",
                    hint="set SLURM_FACTORY_HOME to a writable directory",
                ) from None


_SOURCES = {"project_name": ("project_name", "IF_PROJECT_NAME"), "home": ("home", "SLURM_FACTORY_HOME")}


def _settings_error(error: ValidationError, values: dict[str, Any]) -> str:
    """One line: which setting (the argument, or the environment variable it came from) and what is wrong."""
    detail = error.errors()[0]
    field = str(detail["loc"][0]) if detail["loc"] else "settings"
    argument, variable = _SOURCES.get(field, (field, None))
    source = argument if field in values or variable is None else variable
    message = str(detail.get("msg", error)).removeprefix("Value error, ")
    return f"{source} {quoted(detail.get('input'))} is invalid: {message}"


def load_settings(project_name: str | None = None) -> Settings:
    """Settings from the environment, with an explicit project name (CLI `--project-name`) taking precedence."""
    if project_name is None:
        return Settings()
    try:
        return Settings(project_name=project_name)
    except ConfigurationError as error:
        raise ConfigurationError(error.message.replace("project_name ", "--project-name ", 1)) from None
