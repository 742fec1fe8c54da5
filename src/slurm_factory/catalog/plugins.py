"""The plugins an artifact must contain for its Slurm release and build options."""

from __future__ import annotations

from functools import cache
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict

from slurm_factory.catalog._data import read_data_text


class ExpectedPlugin(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    since: str
    when: Literal["always", "gpu"]


@cache
def load_expected_plugins() -> tuple[ExpectedPlugin, ...]:
    return tuple(
        ExpectedPlugin.model_validate(entry) for entry in yaml.safe_load(read_data_text("plugins.yaml"))["plugins"]
    )


def _series_key(series: str) -> tuple[int, int]:
    major, minor = series.split(".")
    return int(major), int(minor)


def expected_plugins(series: str, *, gpu: bool) -> list[str]:
    """Plugin file names (in lib/slurm) an artifact of this series and GPU option must ship."""
    return [
        plugin.name
        for plugin in load_expected_plugins()
        if _series_key(series) >= _series_key(plugin.since) and (plugin.when == "always" or gpu)
    ]
