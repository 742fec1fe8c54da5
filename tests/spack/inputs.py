"""What the local Spack test set runs the product with: the pinned Spack and spack-packages as local sources
(`SLURM_FACTORY_TEST_SPACK_SOURCE`, `SLURM_FACTORY_TEST_SPACK_PACKAGES_SOURCE`: checkouts or tarballs) and the
wheels Spack's Python needs in the trixie toolchain image, downloaded from PyPI with the host's pip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from slurm_factory.request import REQUIRED_WHEELS

SPACK_SOURCE = os.environ.get("SLURM_FACTORY_TEST_SPACK_SOURCE")
PACKAGES_SOURCE = os.environ.get("SLURM_FACTORY_TEST_SPACK_PACKAGES_SOURCE")
NO_SPACK_REASON = (
    "SLURM_FACTORY_TEST_SPACK_SOURCE / SLURM_FACTORY_TEST_SPACK_PACKAGES_SOURCE unset: no Spack to build the "
    "toolchain image from"
)
# Debian 13's Python, which runs Spack in the trixie toolchain image.
TRIXIE_PYTHON = "3.13"


def wheels_for_trixie(directory: Path) -> Path:
    pins = yaml.safe_load((Path(__file__).parents[2] / "src/slurm_factory/catalog/data/spack.yaml").read_text())
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--only-binary=:all:",
         "--python-version", TRIXIE_PYTHON, "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
         "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "--platform", "any",
         "-d", str(directory), *(pins[name] for name in REQUIRED_WHEELS)],
        check=True,
        timeout=600,
    )  # fmt: skip
    return directory
