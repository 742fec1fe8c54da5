"""GCC versions known to `build-compiler` (and usable by `build-slurm --compiler-version`)."""

from __future__ import annotations

from functools import cache

import yaml
from pydantic import BaseModel, ConfigDict

from slurm_factory.catalog._data import read_data_text
from slurm_factory.exceptions import ConfigurationError


class GccCatalog(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    languages: tuple[str, ...]
    binutils: bool
    versions: tuple[str, ...]


@cache
def load_gcc_catalog() -> GccCatalog:
    return GccCatalog.model_validate(yaml.safe_load(read_data_text("compilers.yaml"))["gcc"])


def check_gcc_version(version: str) -> str:
    catalog = load_gcc_catalog()
    if version not in catalog.versions:
        raise ConfigurationError(
            f"--compiler-version {version!r} is not a known GCC release; valid: {', '.join(catalog.versions)}"
        )
    return version
