"""What the local Spack test set runs the product with: the pinned Spack and spack-packages as local sources
(`SLURM_FACTORY_TEST_SPACK_SOURCE`, `SLURM_FACTORY_TEST_SPACK_PACKAGES_SOURCE`: checkouts or tarballs), the
wheels Spack's Python needs in the trixie toolchain image, downloaded from PyPI with the host's pip, and a source
mirror of the Debian orig tarballs that carry Spack's exact sha256 (`SLURM_FACTORY_TEST_SPACK_SOURCES`, the directory
`scripts/testenv spack-sources` prints) with a site file that makes those packages buildable."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from slurm_factory.request import REQUIRED_WHEELS

SPACK_SOURCE = os.environ.get("SLURM_FACTORY_TEST_SPACK_SOURCE")
PACKAGES_SOURCE = os.environ.get("SLURM_FACTORY_TEST_SPACK_PACKAGES_SOURCE")
NO_SPACK_REASON = (
    "SLURM_FACTORY_TEST_SPACK_SOURCE / SLURM_FACTORY_TEST_SPACK_PACKAGES_SOURCE unset: no Spack to build the "
    "toolchain image from"
)
DEBIAN_SOURCES = os.environ.get("SLURM_FACTORY_TEST_SPACK_SOURCES")
NO_SOURCES_REASON = (
    "SLURM_FACTORY_TEST_SPACK_SOURCES unset: no Debian orig tarballs for the Spack source mirror "
    "(`scripts/testenv spack-sources` fetches them)"
)
# The marks of a test that builds with the real Spack: skipped (saying why) without Spack or the source mirror.
NEEDS_SPACK = pytest.mark.skipif(not (SPACK_SOURCE and PACKAGES_SOURCE), reason=NO_SPACK_REASON)
NEEDS_SOURCE_MIRROR = pytest.mark.skipif(not DEBIAN_SOURCES, reason=NO_SOURCES_REASON)
# Built by Spack from the Debian orig tarballs (the site file makes them buildable); the rest comes from the OS.
SPACK_BUILT = ("http-parser", "jansson", "lz4", "libevent")
SITE_FILE = "packages:\n" + "".join(f"  {name}:\n    buildable: true\n" for name in SPACK_BUILT)
# Debian 13's Python, which runs Spack in the trixie toolchain image.
TRIXIE_PYTHON = "3.13"


def wheels_for_trixie(directory: Path, machine: str = "x86_64") -> Path:
    """The pinned clingo and boto3 wheels for trixie's Python on `machine` (aarch64: the arm64 image's)."""
    pins = yaml.safe_load((Path(__file__).parents[2] / "src/slurm_factory/catalog/data/spack.yaml").read_text())
    platforms = (f"manylinux_2_28_{machine}", f"manylinux_2_17_{machine}", f"manylinux2014_{machine}", "any")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--only-binary=:all:",
         "--python-version", TRIXIE_PYTHON, "--implementation", "cp",
         *(argument for platform in platforms for argument in ("--platform", platform)),
         "-d", str(directory), *(pins[name] for name in REQUIRED_WHEELS)],
        check=True,
        timeout=600,
    )  # fmt: skip
    return directory


def source_mirror(home: Path) -> None:
    """Spack's source-mirror layout (`_source-cache/archive/<sha[:2]>/<sha>.tar.gz`) in the cache of the build home."""
    assert DEBIAN_SOURCES is not None
    for tarball in sorted(Path(DEBIAN_SOURCES).glob("*.orig.tar.gz")):
        digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
        destination = home / "spack-sourcecache" / "_source-cache" / "archive" / digest[:2] / f"{digest}.tar.gz"
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(tarball.read_bytes())
