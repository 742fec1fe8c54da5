"""Which Spack packages a toolchain's OS supplies (`--os-packages`), read from `data/os_packages.yaml`.

The Spack engine marks these `buildable: false` and registers what the toolchain image really has as externals;
which ones depends on the mode: `build` (tools that only run while building), `all` (also every library the OS
packages), `none` (only the compiler, which is always external).
"""

from __future__ import annotations

from functools import cache
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from slurm_factory.catalog._data import read_data_text
from slurm_factory.catalog.toolchains import Toolchain
from slurm_factory.choices import OsPackagesMode as OsPackagesMode

OS_PACKAGES_FILE = "os_packages.yaml"
DEFAULT_PREFIX = "/usr"

Kind = Literal["build", "library", "gpu"]


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    apt: tuple[str, ...]
    dnf: tuple[str, ...]
    prefix: dict[Literal["apt", "dnf"], str] = Field(default_factory=dict)
    provides: tuple[str, ...] = ()
    detect: bool = True


class _OsPackagesFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    build: dict[str, _Entry]
    libraries: dict[str, _Entry]
    gpu: dict[str, _Entry]


class OsExternal(BaseModel):
    """One Spack package taken from the toolchain OS: the OS packages that supply it (the first one's version is
    its version when Spack does not detect it), where it lives, the virtuals it provides and whether Spack's own
    detection is used."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: Kind
    os_packages: tuple[str, ...]
    prefix: str
    provides: tuple[str, ...] = ()
    detect: bool = True


@cache
def _catalog() -> _OsPackagesFile:
    return _OsPackagesFile.model_validate(yaml.safe_load(read_data_text(OS_PACKAGES_FILE)))


def _sections(mode: OsPackagesMode, *, gpu: bool) -> list[tuple[Kind, dict[str, _Entry]]]:
    catalog = _catalog()
    sections: list[tuple[Kind, dict[str, _Entry]]] = []
    if mode in (OsPackagesMode.BUILD, OsPackagesMode.ALL):
        sections.append(("build", catalog.build))
    if mode is OsPackagesMode.ALL:
        sections.append(("library", catalog.libraries))
        if gpu:
            sections.append(("gpu", catalog.gpu))
    return sections


def os_externals(toolchain: Toolchain, mode: OsPackagesMode, *, gpu: bool = False) -> tuple[OsExternal, ...]:
    """The Spack packages this toolchain's OS supplies in `mode`, in catalog order; those the OS does not package
    (an empty list for the toolchain) are left to Spack."""
    externals = []
    for kind, entries in _sections(mode, gpu=gpu):
        for name, entry in entries.items():
            family_packages = entry.apt if toolchain.family == "apt" else entry.dnf
            packages = toolchain.spack.os_packages.get(name, family_packages)
            if not packages:
                continue
            externals.append(
                OsExternal(
                    name=name,
                    kind=kind,
                    os_packages=tuple(packages),
                    prefix=entry.prefix.get(toolchain.family, DEFAULT_PREFIX),
                    provides=entry.provides,
                    detect=entry.detect,
                )
            )
    return tuple(externals)


def known_names() -> set[str]:
    """Every Spack package any mode can take from an OS (to check a toolchain's overrides against)."""
    catalog = _catalog()
    return {*catalog.build, *catalog.libraries, *catalog.gpu}
