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


class OsPackagesMode(StrEnum):
    """What a Spack build takes from the toolchain OS (`--os-packages`)."""

    NONE = "none"
    BUILD = "build"
    ALL = "all"
