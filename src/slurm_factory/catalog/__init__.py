"""The catalog: what exists (toolchains, Slurm releases), read from data files shipped in the package.

Adding an OS or a Slurm patch release is a change to `data/`, not to code.
"""

from slurm_factory.catalog.releases import SlurmRelease, known_series, load_releases, resolve_release
from slurm_factory.catalog.toolchains import (
    NativeToolchain,
    PackageFamily,
    Toolchain,
    load_families,
    load_toolchains,
    toolchain_names,
)

__all__ = [
    "NativeToolchain",
    "PackageFamily",
    "SlurmRelease",
    "Toolchain",
    "known_series",
    "load_families",
    "load_releases",
    "load_toolchains",
    "resolve_release",
    "toolchain_names",
]
