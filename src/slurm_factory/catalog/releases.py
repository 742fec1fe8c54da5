"""Slurm releases: every known release tag with the sha256 of SchedMD's source archive.

A user names a series (`24.11`, meaning its newest known patch release) or an exact release (`24.11.5`). Both
resolve to one `SlurmRelease`, whose sha256 every source tarball is checked against before anything compiles.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import cache

from slurm_factory.catalog._data import read_data_text
from slurm_factory.exceptions import ConfigurationError

RELEASES_FILE = "slurm-releases.tsv"
ARCHIVE_URL = "https://github.com/SchedMD/slurm/archive/refs/tags/slurm-{tag}.tar.gz"
_TAG = re.compile(r"^(\d+)-(\d+)-(\d+)-(\d+)$")
_REQUESTED = re.compile(r"^(\d{2})\.(\d{2})(?:\.(\d+))?$")


@dataclass(frozen=True, order=True)
class SlurmRelease:
    """One SchedMD release tag, e.g. tag `24-11-5-1` is version `24.11.5` of series `24.11`."""

    key: tuple[int, int, int, int]
    tag: str
    sha256: str
    date: dt.date

    @property
    def version(self) -> str:
        major, minor, patch, _ = self.key
        return f"{major:02d}.{minor:02d}.{patch}"

    @property
    def series(self) -> str:
        major, minor, _, _ = self.key
        return f"{major:02d}.{minor:02d}"

    @property
    def url(self) -> str:
        return ARCHIVE_URL.format(tag=self.tag)

    @property
    def source_date_epoch(self) -> int:
        """The release date at midnight UTC: every timestamp a reproducible build writes."""
        return int(dt.datetime.combine(self.date, dt.time(), tzinfo=dt.UTC).timestamp())

    @property
    def archive_name(self) -> str:
        return f"slurm-{self.tag}.tar.gz"


def parse_releases(text: str) -> tuple[SlurmRelease, ...]:
    releases = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"{RELEASES_FILE}:{number}: expected 3 tab-separated fields, got {len(fields)}")
        tag, sha256, date = fields
        match = _TAG.match(tag)
        if not match or not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ValueError(f"{RELEASES_FILE}:{number}: malformed release line {line!r}")
        key = (int(match[1]), int(match[2]), int(match[3]), int(match[4]))
        releases.append(SlurmRelease(key=key, tag=tag, sha256=sha256, date=dt.date.fromisoformat(date)))
    return tuple(sorted(releases))


@cache
def load_releases() -> tuple[SlurmRelease, ...]:
    """All known releases, oldest first."""
    return parse_releases(read_data_text(RELEASES_FILE))


def known_series() -> list[str]:
    return sorted({release.series for release in load_releases()})


def newest_in_series(series: str) -> SlurmRelease | None:
    candidates = [release for release in load_releases() if release.series == series]
    return max(candidates) if candidates else None


def resolve_release(requested: str) -> SlurmRelease:
    """`24.11` → newest 24.11 patch; `24.11.5` → that patch (newest packaging suffix); anything else is an error."""
    text = requested.strip()
    match = _REQUESTED.match(text)
    valid = ", ".join(known_series())
    if not match:
        raise ConfigurationError(
            f"--slurm-version {requested!r} is not a Slurm version; use a series ({valid}) or an exact release "
            "such as 24.11.5"
        )
    series = f"{match[1]}.{match[2]}"
    newest = newest_in_series(series)
    if newest is None:
        raise ConfigurationError(f"--slurm-version {requested!r}: unknown Slurm series; known series: {valid}")
    if match[3] is None:
        return newest
    patch = int(match[3])
    exact = [release for release in load_releases() if release.series == series and release.key[2] == patch]
    if not exact:
        patches = ", ".join(sorted({r.version for r in load_releases() if r.series == series}, key=_patch_number))
        raise ConfigurationError(f"--slurm-version {requested!r}: no such release; known {series} releases: {patches}")
    return max(exact)


def _patch_number(version: str) -> int:
    return int(version.rsplit(".", 1)[1])
