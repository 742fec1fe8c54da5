"""Which release can be upgraded in place from which (`data/upgrades.yaml`): SchedMD's compatibility window."""

from __future__ import annotations

import re
from functools import cache

import yaml
from pydantic import BaseModel, ConfigDict

from slurm_factory.catalog._data import read_data_text
from slurm_factory.exceptions import ConfigurationError


class _UpgradeRules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    major_releases: tuple[str, ...]
    previous: int
    previous_since: dict[str, int]


@cache
def _rules() -> _UpgradeRules:
    return _UpgradeRules.model_validate(yaml.safe_load(read_data_text("upgrades.yaml")))


_RELEASE = re.compile(r"^([0-9]{2})\.([0-9]{2})\.([0-9]{1,3})(?:-[0-9]+)?$")


def _key(series: str) -> tuple[int, int]:
    major, minor = series.split(".")[:2]
    return int(major), int(minor)


def _release_key(version: str, option: str) -> tuple[int, int, int]:
    """`24.11.5` (or a packaging suffix: `24.11.5-1`) as numbers; anything else is refused."""
    match = _RELEASE.match(version)
    if match is None:
        raise ConfigurationError(f"{option}: {version[:40]!r} is not a Slurm release such as 24.11.5")
    return int(match[1]), int(match[2]), int(match[3])


def upgrade_sources(series: str, known: tuple[str, ...] = ()) -> list[str]:
    """The major releases `series` accepts the state of (oldest first): the previous two, three from 24.11 on.
    `known`: other series (a site's releases file, the old artifact's) take their place among the majors."""
    rules = _rules()
    ordered = sorted({*rules.major_releases, *known, series}, key=_key)
    window = rules.previous
    for since, count in sorted(rules.previous_since.items(), key=lambda item: _key(item[0])):
        if _key(series) >= _key(since):
            window = count
    position = ordered.index(series)
    return ordered[max(0, position - window) : position]


def check_upgrade(old_version: str, new_version: str, option: str = "--upgrade-from") -> None:
    """Refuse (exit 2) an upgrade Slurm does not support: a downgrade, the same release, or an old release outside
    the new one's window; the message names the range it supports."""
    old_key, new_key = _release_key(old_version, option), _release_key(new_version, option)
    old_series, new_series = f"{old_key[0]:02d}.{old_key[1]:02d}", f"{new_key[0]:02d}.{new_key[1]:02d}"
    if old_key == new_key:
        raise ConfigurationError(f"{option}: both artifacts are Slurm {new_version}; an upgrade needs an older one")
    if old_key > new_key:
        raise ConfigurationError(
            f"{option}: Slurm {old_version} to {new_version} is a downgrade, which Slurm does not support",
            hint="give the older release's artifact to --upgrade-from",
        )
    sources = upgrade_sources(new_series, known=(old_series,))
    if old_series != new_series and old_series not in sources:
        supported = f"its own patch releases and from {', '.join(sources)}" if sources else "its own patch releases"
        raise ConfigurationError(
            f"{option}: an upgrade from Slurm {old_version} to {new_version} is not supported: SchedMD supports "
            f"upgrades to {new_series} from {supported}",
            hint=f"upgrade through {sources[-1] if sources else new_series} first (https://slurm.schedmd.com/"
            "upgrades.html)",
        )
