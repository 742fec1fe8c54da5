"""Which release can be upgraded in place from which (`data/upgrades.yaml`): SchedMD's compatibility window."""

from __future__ import annotations

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


def _key(series: str) -> tuple[int, int]:
    major, minor = series.split(".")[:2]
    return int(major), int(minor)


def _series_of(version: str) -> str:
    return ".".join(version.split(".")[:2])


def upgrade_sources(series: str) -> list[str]:
    """The major releases `series` accepts the state of (oldest first): the previous two, three from 24.11 on."""
    rules = _rules()
    ordered = sorted({*rules.major_releases, series}, key=_key)
    window = rules.previous
    for since, count in sorted(rules.previous_since.items(), key=lambda item: _key(item[0])):
        if _key(series) >= _key(since):
            window = count
    position = ordered.index(series)
    return ordered[max(0, position - window) : position]


def check_upgrade(old_version: str, new_version: str, option: str = "--upgrade-from") -> None:
    """Refuse (exit 2) an upgrade Slurm does not support: a downgrade, the same release, or an old release outside
    the new one's window; the message names the range it supports."""
    old_series, new_series = _series_of(old_version), _series_of(new_version)
    old_key = (*_key(old_series), int(old_version.split(".")[2]))
    new_key = (*_key(new_series), int(new_version.split(".")[2]))
    if old_key == new_key:
        raise ConfigurationError(f"{option}: both artifacts are Slurm {new_version}; an upgrade needs an older one")
    if old_key > new_key:
        raise ConfigurationError(
            f"{option}: Slurm {old_version} to {new_version} is a downgrade, which Slurm does not support",
            hint="give the older release's artifact to --upgrade-from",
        )
    sources = upgrade_sources(new_series)
    if old_series != new_series and old_series not in sources:
        supported = f"its own patch releases and from {', '.join(sources)}" if sources else "its own patch releases"
        raise ConfigurationError(
            f"{option}: an upgrade from Slurm {old_version} to {new_version} is not supported: SchedMD supports "
            f"upgrades to {new_series} from {supported}",
            hint=f"upgrade through {sources[-1] if sources else new_series} first (https://slurm.schedmd.com/"
            "upgrades.html)",
        )
