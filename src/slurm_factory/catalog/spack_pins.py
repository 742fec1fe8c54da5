"""The Spack release and builtin package-repository commit the Spack engine is pinned to."""

from __future__ import annotations

from functools import cache

import yaml
from pydantic import BaseModel, ConfigDict

from slurm_factory.catalog._data import read_data_text


class GitPin(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    git: str
    ref: str
    commit: str


class SpackPins(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    spack: GitPin
    packages: GitPin
    clingo: str
    boto3: str
    targets: dict[str, str]  # by arch (`amd64`, `arm64`)
    padded_length: int

    def target(self, arch: str) -> str:
        """The Spack target everything of an `arch` build is required to have."""
        return self.targets[arch]


@cache
def load_spack_pins() -> SpackPins:
    return SpackPins.model_validate(yaml.safe_load(read_data_text("spack.yaml")))
