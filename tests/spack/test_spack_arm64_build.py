"""A real Spack build of Slurm for arm64 on this x86_64 host, through the CLI: trixie, Slurm 24.11.5,
`--os-packages all`, in the arm64 toolchain image under qemu (Spack has no cross path), then `--verify` under qemu.

As in test_spack_build.py, a site file makes http-parser, jansson, lz4 and libevent buildable from the Debian orig
tarballs in the source mirror, so Spack compiles libraries for aarch64 too, not only Slurm. The wheels Spack's
Python needs are the aarch64 ones (`pip download --platform manylinux_2_28_aarch64`).

Local only: the Spack inputs of tests/spack/inputs.py, SLURM_FACTORY_TEST_SLURM_SOURCE, and
SLURM_FACTORY_TEST_ARM64=1 after `scripts/testenv arm64`. Everything runs under emulation: the native engine's
emulated build of the same release alone takes over an hour on 2 cores, so give this one an idle machine for hours.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from pathlib import Path

import docker
import pytest

from slurm_factory.choices import Arch
from slurm_factory.emulation import emulation_problem
from tests.conftest import slurm_source_tarball
from tests.e2e.helpers import elf_machines, remove_project, report_measurement, run_cli
from tests.spack.inputs import (
    NEEDS_SOURCE_MIRROR,
    NEEDS_SPACK,
    PACKAGES_SOURCE,
    SITE_FILE,
    SPACK_SOURCE,
    source_mirror,
    wheels_for_trixie,
)

pytestmark = [
    pytest.mark.spack,
    pytest.mark.docker,
    pytest.mark.arm64,
    NEEDS_SPACK,
    NEEDS_SOURCE_MIRROR,
    pytest.mark.skipif(
        os.environ.get("SLURM_FACTORY_TEST_ARM64") != "1",
        reason="SLURM_FACTORY_TEST_ARM64 unset: the arm64 Spack build is a local test (scripts/testenv arm64)",
    ),
]
# Everything under qemu: Spack's Python, the compilers, the verification daemons.
EMULATED_BUILD_TIMEOUT = 4 * 3600


def test_spack_builds_an_aarch64_slurm_and_its_libraries_under_emulation_and_it_verifies(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    problem = emulation_problem(Arch.ARM64)
    assert problem is None, f"SLURM_FACTORY_TEST_ARM64=1 but this host cannot run arm64 binaries: {problem}"
    home = tmp_path / "home"
    source_mirror(home)
    site = tmp_path / "site-packages.yaml"
    site.write_text(SITE_FILE, encoding="utf-8")
    project = f"sf-spack-arm64-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    try:
        done = run_cli(
            home, project, "build-slurm", "--json", "--arch", "arm64", "--engine", "spack", "--toolchain", "trixie",
            "--slurm-version", "24.11.5", "--slurm-source", str(slurm_source_tarball()), "--os-packages", "all",
            "--spack-packages", str(site), "--verify", "--spack-source", str(SPACK_SOURCE),
            "--spack-packages-source", str(PACKAGES_SOURCE),
            "--python-wheels", str(wheels_for_trixie(tmp_path / "wheels", "aarch64")),
            timeout=EMULATED_BUILD_TIMEOUT,
        )  # fmt: skip
    finally:
        remove_project(docker_client, project)
    seconds = time.monotonic() - started
    assert done.returncode == 0, f"build failed:\n{done.stderr[-6000:]}\n{done.stdout[-3000:]}"
    result = json.loads(done.stdout)
    durations = result["durations"]
    report_measurement(
        f"spack arm64 build (under emulation) of trixie 24.11.5 --os-packages all --verify: {seconds:.0f} s (image "
        f"{durations.get('image', 0):.0f} s, install {durations.get('install', 0):.0f} s, verify "
        f"{durations.get('verify', 0):.0f} s), tarball {result['size'] / 1e6:.1f} MB"
    )

    assert Path(result["artifact"]).name == "slurm-24.11-trixie-arm64-software.tar.gz"
    manifest = result["manifest"]
    assert manifest["arch"] == "arm64" and manifest["engine"] == "spack"
    assert manifest["built_under_emulation"] is True and manifest["cross_compiled"] is False
    external = {entry["name"] for entry in manifest["os_externals"]}
    built = {package["name"] for package in manifest["spack_packages"]} - external - {"gcc", "glibc"}
    assert {"slurm", "http-parser", "lz4"} <= built, built
    externals = {entry["name"]: entry for entry in manifest["os_externals"]}
    assert externals["pmix"]["prefix"] == "/usr/lib/aarch64-linux-gnu/pmix2", "detected in the arm64 image"

    log = Path(result["log"]).read_text(encoding="utf-8")
    concretized = re.findall(r"\bslurm@24\.11\.5[^\n]*?\barch=(\S+)", log)
    assert concretized and all(arch.endswith("-aarch64") for arch in concretized), concretized

    verification = result["verification"]
    checks = {check["name"]: check for check in verification["checks"]}
    assert verification["passed"], [check for check in checks.values() if not check["passed"]]
    for name in ("static: machine type", "static: RUNPATH", "relocated: libraries", "cluster: srun -N2",
                 "cluster: sbatch", "cluster: MPI over pmix", "cluster: Lmod modulefile"):  # fmt: skip
        assert checks[name]["passed"], checks[name]

    machines = elf_machines(Path(result["stored"]))
    assert len(machines) > 100
    assert set(machines.values()) == {"EM_AARCH64"}, [name for name, m in machines.items() if m != "EM_AARCH64"]
    assert any(name.endswith("lib/liblz4.so.1") for name in machines), "Spack's aarch64 lz4 is shipped"
