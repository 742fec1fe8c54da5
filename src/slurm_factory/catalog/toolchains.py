"""Toolchains: one OS base image and its compiler each, with the packages every engine needs on it."""

from __future__ import annotations

from functools import cache
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from slurm_factory.catalog._data import read_data_text
from slurm_factory.choices import DEFAULT_TOOLCHAIN as DEFAULT_TOOLCHAIN
from slurm_factory.exceptions import ConfigurationError

TOOLCHAINS_FILE = "toolchains.yaml"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VerifyPackages(_Frozen):
    """What the verification images of one package family add to an artifact's runtime packages."""

    base_packages: tuple[str, ...]
    lmod_packages: tuple[str, ...]
    lmod_init: str
    mpi_runtime_packages: tuple[str, ...]
    mpi_build_packages: tuple[str, ...]
    mpicc: str
    cluster_tools: tuple[str, ...]
    # The system's PAM module directory (`{multiarch}`: the arch's triplet).
    pam_dir: str
    database_packages: tuple[str, ...]


class PackageFamily(_Frozen):
    """What every toolchain image of one package-manager family installs."""

    toolchain_packages: tuple[str, ...]
    cross_packages: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    spack_packages: tuple[str, ...]
    verify: VerifyPackages


class SpackToolchain(_Frozen):
    """The OS compiler as Spack sees it (registered as an external), the Python that runs Spack, and where this OS
    names the packages that supply Spack packages differently from its family (`--os-packages`)."""

    compiler: str
    python: str
    python_packages: tuple[str, ...]
    os_packages: dict[str, tuple[str, ...]] = Field(default_factory=dict)


class NativeToolchain(_Frozen):
    """What `--engine native` needs on this OS: -dev packages to build against, packages to run the result."""

    build_packages: tuple[str, ...]
    gpu_build_packages: tuple[str, ...] = ()
    gpu_configure_options: tuple[str, ...] = ()
    configure_options: tuple[str, ...] = ()
    runtime_packages: tuple[str, ...]

    @property
    def supports_gpu(self) -> bool:
        return bool(self.gpu_build_packages)


class ArchSupport(_Frozen):
    """How a toolchain builds for one arch: which engines, whether by the OS's cross toolchain, and the arch's own
    image of the OS (found by tag: Docker ignores `docker import --platform`)."""

    engines: tuple[Literal["spack", "native"], ...]
    cross: bool = False
    base_image: str | None = None
    # The arch's packages are in another archive than the build host's (Ubuntu's ports): a cross build takes the
    # apt sources of `base_image`, which names that archive (or a site's mirror of it).
    foreign_apt_sources: bool = False

    @model_validator(mode="after")
    def _sources_image_for_cross(self) -> ArchSupport:
        if self.foreign_apt_sources and not (self.cross and self.base_image):
            raise ValueError("foreign_apt_sources needs cross: true and the arch's base_image")
        return self


_AMD64_ONLY = {"amd64": ArchSupport(engines=("spack", "native"))}


class Toolchain(_Frozen):
    """One OS toolchain, e.g. `trixie` = Debian 13 with GCC 14."""

    name: str
    os: str
    os_id: Literal["debian", "ubuntu", "rocky"]
    codename: str
    base_image: str
    family: Literal["apt", "dnf"]
    gcc: str
    glibc: str
    repositories: tuple[str, ...] = ()
    gpu_repositories: tuple[str, ...] = ()
    epel: bool = False
    arches: dict[str, ArchSupport] = Field(default_factory=lambda: dict(_AMD64_ONLY))
    native: NativeToolchain
    spack: SpackToolchain
    packages: PackageFamily = Field(exclude=True)


class _CatalogFile(_Frozen):
    multiarch: dict[str, str]
    families: dict[str, PackageFamily]
    toolchains: dict[str, dict[str, object]]


@cache
def _catalog() -> _CatalogFile:
    return _CatalogFile.model_validate(yaml.safe_load(read_data_text(TOOLCHAINS_FILE)))


@cache
def load_families() -> dict[str, PackageFamily]:
    return dict(_catalog().families)


@cache
def load_toolchains() -> dict[str, Toolchain]:
    """Every toolchain by name, in the order of the data file (the order `list` shows)."""
    families = load_families()
    toolchains = {}
    for name, entry in _catalog().toolchains.items():
        family = str(entry["family"])
        toolchains[name] = Toolchain.model_validate({**entry, "name": name, "packages": families[family]})
    return toolchains


def multiarch_triplet(arch: str) -> str:
    """Debian's multiarch triplet of `arch` (`arm64` → `aarch64-linux-gnu`)."""
    return _catalog().multiarch[arch]


def toolchain_names() -> list[str]:
    return list(load_toolchains())


def get_toolchain(name: str) -> Toolchain:
    toolchains = load_toolchains()
    if name not in toolchains:
        raise ConfigurationError(f"--toolchain {name!r} is unknown; valid toolchains: {', '.join(toolchains)}")
    return toolchains[name]
