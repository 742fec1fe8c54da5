"""The .deb package split (`data/deb_packages.yaml`): names, dependencies, units, descriptions and the lintian
tags accepted for them."""

from __future__ import annotations

from functools import cache

import yaml
from pydantic import BaseModel, ConfigDict

from slurm_factory.catalog._data import read_data_text

DEB_PACKAGES_FILE = "deb_packages.yaml"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DebPackage(_Frozen):
    name: str
    summary: str
    description: tuple[str, ...]
    depends: tuple[str, ...]
    section: str | None = None
    architecture: str = "any"
    multi_arch: str | None = None
    pre_depends: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    units: tuple[str, ...] = ()


class LintianOverride(_Frozen):
    """A lintian tag (with its context pattern) accepted for `packages`, and why."""

    tag: str
    packages: tuple[str, ...]
    reason: str


class DebPackages(_Frozen):
    maintainer: str
    packages: tuple[DebPackage, ...]
    lintian_overrides: tuple[LintianOverride, ...] = ()


@cache
def load_deb_packages() -> DebPackages:
    return DebPackages.model_validate(yaml.safe_load(read_data_text(DEB_PACKAGES_FILE)))
