"""Slurm releases: every known release tag with the sha256 of SchedMD's source archive.

A user names a series (`24.11`, meaning its newest known patch release) or an exact release (`24.11.5`). Both
resolve to one `SlurmRelease`, whose sha256 every source tarball is checked against before anything compiles.

A site adds releases the shipped catalog does not know yet in a releases file of the same columns
(`<home>/releases.tsv`, or `--releases-file`), merged over the catalog; a malformed line is refused with its number.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from slurm_factory.catalog._data import read_data_text
from slurm_factory.exceptions import ConfigurationError

RELEASES_FILE = "slurm-releases.tsv"
ARCHIVE_URL = "https://github.com/SchedMD/slurm/archive/refs/tags/slurm-{tag}.tar.gz"
# ASCII digits only: `int()` takes other scripts' digits too, and a tag is also part of a URL.
_TAG = re.compile(r"^([0-9]{2})-([0-9]{2})-([0-9]{1,3})-([0-9]{1,3})$")
_REQUESTED = re.compile(r"^([0-9]{2})\.([0-9]{2})(?:\.([0-9]{1,3}))?$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
# Slurm's first release tag is from 2002; a release date is every mtime of a build, so it must be a plausible one.
_FIRST_RELEASE_YEAR = 2002
# A releases file is a few hundred lines; one far larger is not one.
MAX_RELEASES_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True, order=True)
class SlurmRelease:
    """One SchedMD release tag, e.g. tag `24-11-5-1` is version `24.11.5` of series `24.11`."""

    key: tuple[int, int, int, int]
    tag: str
    sha256: str
    date: dt.date
    # Where the release is known from: the shipped catalog, or the site releases file (its path).
    origin: str = field(default="catalog", compare=False)

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


class ReleaseLineError(ValueError):
    """A malformed line of a releases file: its line number and what is wrong with it."""

    def __init__(self, number: int, problem: str) -> None:
        super().__init__(f"line {number}: {problem}")
        self.number = number
        self.problem = problem


def parse_releases(text: str, origin: str = "catalog") -> tuple[SlurmRelease, ...]:
    """Lines of `tag<TAB>sha256<TAB>YYYY-MM-DD` (`#` comments and blank lines skipped), oldest first."""
    releases = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise ReleaseLineError(number, f"expected 3 tab-separated fields (tag, sha256, date), got {len(fields)}")
        tag, sha256, date = (value.strip() for value in fields)
        match = _TAG.match(tag)
        if not match:
            raise ReleaseLineError(number, f"{tag!r} is not a release tag such as 26-05-5-1")
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ReleaseLineError(number, f"{sha256!r} is not a sha256 (64 lower-case hex digits)")
        try:
            released = dt.date.fromisoformat(date) if _DATE.match(date) else None
        except ValueError:
            released = None
        if released is None or not _FIRST_RELEASE_YEAR <= released.year <= dt.date.today().year + 1:
            raise ReleaseLineError(number, f"{date!r} is not a release date (YYYY-MM-DD)")
        if tag in seen:
            raise ReleaseLineError(number, f"{tag} is listed already, on line {seen[tag]}")
        seen[tag] = number
        key = (int(match[1]), int(match[2]), int(match[3]), int(match[4]))
        releases.append(SlurmRelease(key=key, tag=tag, sha256=sha256, date=released, origin=origin))
    return tuple(sorted(releases))


@cache
def load_releases() -> tuple[SlurmRelease, ...]:
    """All releases the shipped catalog knows, oldest first."""
    try:
        return parse_releases(read_data_text(RELEASES_FILE))
    except ReleaseLineError as error:
        raise ValueError(f"{RELEASES_FILE}:{error.number}: {error.problem}") from None


def load_site_releases(path: Path, option: str = "--releases-file") -> tuple[SlurmRelease, ...]:
    """A site's releases file, each line checked (its number in the error); a release the catalog has with another
    sha256 is refused: one release has one archive."""
    try:
        if not path.is_file():
            raise ConfigurationError(f"{option} {str(path)!r}: not a regular file")
        if path.stat().st_size > MAX_RELEASES_FILE_BYTES:
            raise ConfigurationError(
                f"{option} {str(path)!r}: over {MAX_RELEASES_FILE_BYTES} bytes; not a releases file"
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigurationError(f"{option} {str(path)!r}: {reason}") from None
    try:
        releases = parse_releases(text, origin=str(path))
    except ReleaseLineError as error:
        raise ConfigurationError(
            f"{option} {path}:{error.number}: {error.problem}",
            hint="each line is a tag (26-05-5-1), the sha256 of SchedMD's archive of it and the tag's date "
            "(YYYY-MM-DD), tab-separated, as in slurm-factory's catalog/data/slurm-releases.tsv",
        ) from None
    shipped = {release.tag: release for release in load_releases()}
    for release in releases:
        known = shipped.get(release.tag)
        if known is not None and known.sha256 != release.sha256:
            raise ConfigurationError(
                f"{option} {path}: release {release.tag} has sha256 {release.sha256}, the catalog's is {known.sha256}",
                hint="one release has one archive: drop the line, or correct its sha256",
            )
    return releases


def merged_releases(site: Sequence[SlurmRelease] = ()) -> tuple[SlurmRelease, ...]:
    """The catalog's releases with a site's added (a tag both know is the catalog's), oldest first."""
    shipped = load_releases()
    tags = {release.tag for release in shipped}
    return tuple(sorted((*shipped, *(release for release in site if release.tag not in tags))))


def known_series(releases: Sequence[SlurmRelease] | None = None) -> list[str]:
    return sorted({release.series for release in (load_releases() if releases is None else releases)})


def newest_in_series(series: str, releases: Sequence[SlurmRelease] | None = None) -> SlurmRelease | None:
    candidates = [
        release for release in (load_releases() if releases is None else releases) if release.series == series
    ]
    return max(candidates) if candidates else None


def resolve_release(requested: str, site: Sequence[SlurmRelease] = ()) -> SlurmRelease:
    """`24.11` → newest 24.11 patch; `24.11.5` → that patch (newest packaging suffix); anything else is an error.
    `site` adds a site's releases (`load_site_releases`) to the catalog's."""
    releases = merged_releases(site)
    text = requested.strip()
    match = _REQUESTED.match(text)
    valid = ", ".join(known_series(releases))
    if not match:
        raise ConfigurationError(
            f"--slurm-version {requested!r} is not a Slurm version; use a series ({valid}) or an exact release "
            "such as 24.11.5"
        )
    series = f"{match[1]}.{match[2]}"
    newest = newest_in_series(series, releases)
    if newest is None:
        raise ConfigurationError(
            f"--slurm-version {requested!r}: unknown Slurm series; known series: {valid}", hint=_SITE_RELEASES_HINT
        )
    if match[3] is None:
        return newest
    patch = int(match[3])
    exact = [release for release in releases if release.series == series and release.key[2] == patch]
    if not exact:
        patches = ", ".join(sorted({r.version for r in releases if r.series == series}, key=_patch_number))
        raise ConfigurationError(
            f"--slurm-version {requested!r}: no such release; known {series} releases: {patches}",
            hint=_SITE_RELEASES_HINT,
        )
    return max(exact)


_SITE_RELEASES_HINT = (
    "a release newer than slurm-factory's catalog: add its tag, sha256 and date to releases.tsv in "
    "slurm-factory's home (~/.slurm-factory, or $SLURM_FACTORY_HOME), or to the file --releases-file names"
)


def _patch_number(version: str) -> int:
    return int(version.rsplit(".", 1)[1])
