"""The closed sets of values the request accepts (engines, buildcache and publish modes, `--os-packages`).

Kept free of heavy imports: the command line builds its options (and `--help`, and shell completion) from these
without loading pydantic, Docker or the catalog.
"""

from __future__ import annotations

from enum import StrEnum

DEFAULT_SLURM_VERSION = "25.11"
DEFAULT_TOOLCHAIN = "noble"


class Engine(StrEnum):
    SPACK = "spack"
    NATIVE = "native"


class BuildcacheMode(StrEnum):
    NONE = "none"
    DEPS = "deps"
    ALL = "all"


class PublishMode(StrEnum):
    NONE = "none"
    SLURM = "slurm"
    DEPS = "deps"
    ALL = "all"


class PackageKind(StrEnum):
    """What a build produces (`--package`): the relocatable tarball, the toolchain OS's native packages (.deb on apt
    toolchains, .rpm on dnf ones), or the tarball and the toolchain's native format."""

    TARBALL = "tarball"
    DEB = "deb"
    RPM = "rpm"
    ALL = "all"


class OsPackagesMode(StrEnum):
    """What a Spack build takes from the toolchain OS (`--os-packages`)."""

    NONE = "none"
    BUILD = "build"
    ALL = "all"


class Arch(StrEnum):
    """The machine an artifact runs on (`--arch`), by Debian's architecture names."""

    AMD64 = "amd64"
    ARM64 = "arm64"


# `uname -m` (Python's platform.machine()) → Arch. A machine outside this table cannot be a build host.
_MACHINES = {"x86_64": Arch.AMD64, "amd64": Arch.AMD64, "aarch64": Arch.ARM64, "arm64": Arch.ARM64}
# Arch → the kernel's (and manylinux wheel tags') name of that machine.
LINUX_MACHINES = {Arch.AMD64: "x86_64", Arch.ARM64: "aarch64"}


def arch_suffix(arch: Arch | str) -> str:
    """What names carry for an arch: amd64 keeps the contract's names, every other arch is named (`-arm64`)."""
    return "" if arch == Arch.AMD64 else f"-{Arch(arch).value}"


def host_arch(machine: str | None = None) -> Arch | None:
    """The architecture of this host (`--arch`'s default), or None for a machine slurm-factory does not build on."""
    import platform

    return _MACHINES.get((machine if machine is not None else platform.machine()).lower())
