"""Shell completion of option values from the catalog (imported only when a shell asks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slurm_factory.catalog import SlurmRelease


def complete_toolchain(incomplete: str) -> list[tuple[str, str]]:
    """The catalog's toolchains, with their OS."""
    from slurm_factory.catalog import load_toolchains

    return [(name, t.os) for name, t in load_toolchains().items() if name.startswith(incomplete)]


def releases_by_series(releases: Sequence[SlurmRelease] | None = None) -> dict[str, list[str]]:
    """Every release of every series (the catalog's, or `releases`), oldest first."""
    from slurm_factory.catalog import load_releases

    by_series: dict[str, list[str]] = {}
    for release in load_releases() if releases is None else releases:
        versions = by_series.setdefault(release.series, [])
        if release.version not in versions:
            versions.append(release.version)
    return by_series


def complete_slurm_version(incomplete: str) -> list[tuple[str, str]]:
    """Every series (newest first, meaning its newest patch) and every exact release."""
    series = releases_by_series()
    choices = [(name, f"newest: {versions[-1]}") for name, versions in reversed(series.items())]
    choices += [(version, f"release of {name}") for name, versions in series.items() for version in versions]
    return [(value, text) for value, text in choices if value.startswith(incomplete)]


def complete_gcc_version(incomplete: str) -> list[str]:
    """The GCC releases `build-compiler` knows."""
    from slurm_factory.catalog.compilers import load_gcc_catalog

    return [version for version in load_gcc_catalog().versions if version.startswith(incomplete)]
