"""Real arm64 builds of Slurm 24.11.5 for trixie from this x86_64 host (native engine): by Debian's cross toolchain
with `--verify` (static checks, then the relocated and two-node cluster checks in the arm64 image under qemu), and
with `--emulate` inside the arm64 image under qemu.

Local, not CI: it needs `scripts/testenv arm64` (qemu-user-static + binfmt_misc; the build's last steps run the
arm64 loader and `slurmd -V` under emulation) and costs minutes on top of CI's budget (see the CHANGELOG for the
figures). Run it with `SLURM_FACTORY_TEST_ARM64=1 scripts/run-tests -m arm64`; `-m "not arm64"` deselects it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from slurm_factory.artifact import sidecar
from slurm_factory.choices import Arch
from slurm_factory.emulation import emulation_problem
from tests.conftest import slurm_source_tarball
from tests.e2e.helpers import elf_machines, native_build, report_measurement

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.arm64]
# Configure and compile under qemu take over an hour on 2 cores (the CHANGELOG has the figures).
EMULATED_BUILD_TIMEOUT = 3 * 3600


@pytest.fixture(scope="module")
def arm64_enabled() -> None:
    if os.environ.get("SLURM_FACTORY_TEST_ARM64") != "1":
        pytest.skip("SLURM_FACTORY_TEST_ARM64 unset: the arm64 cross build is a local test (scripts/testenv arm64)")
    problem = emulation_problem(Arch.ARM64)
    if problem is not None:
        pytest.fail(f"SLURM_FACTORY_TEST_ARM64=1 but this host cannot run arm64 binaries: {problem}")


@pytest.mark.parametrize(("how", "options"), [("cross", ("--verify",)), ("emulated", ("--emulate",))])
def test_an_arm64_build_gives_an_aarch64_tree_named_and_recorded_as_arm64(
    arm64_enabled: None, tmp_path: Path, project_cleanup: str, how: str, options: tuple[str, ...]
) -> None:
    """By Debian's cross toolchain, or (`--emulate`) inside the arm64 image under qemu."""
    timeout = EMULATED_BUILD_TIMEOUT if "--emulate" in options else 3600
    build = native_build(
        tmp_path / "home", project_cleanup, slurm_source_tarball(), "--arch", "arm64", *options, timeout=timeout
    )
    durations = build.result["durations"]
    report_measurement(
        f"arm64 {how} build of 24.11.5 for trixie (cold home){' --verify' if '--verify' in options else ''}: "
        f"{build.seconds:.0f} s (image {durations.get('image', 0):.0f} s, configure "
        f"{durations.get('configure', 0):.0f} s, compile {durations.get('compile', 0):.0f} s, install "
        f"{durations.get('install', 0):.0f} s, verify {durations.get('verify', 0):.0f} s)"
    )
    if "--verify" in options:
        verification = build.result["verification"]
        checks = {check["name"]: check for check in verification["checks"]}
        assert verification["passed"], [check for check in checks.values() if not check["passed"]]
        for name in ("static: machine type", "relocated: libraries", "relocated: versions", "cluster: srun -N2",
                     "cluster: sbatch", "cluster: MPI over pmix", "cluster: Lmod modulefile"):  # fmt: skip
            assert checks[name]["passed"], checks[name]
        assert "arm64v8/debian:trixie" in checks["images"]["summary"]
    assert Path(build.result["artifact"]).name == "slurm-24.11-trixie-arm64-software.tar.gz"
    manifest = json.loads(sidecar(build.artifact, ".manifest.json").read_text(encoding="utf-8"))
    assert manifest["arch"] == "arm64"
    assert manifest["cross_compiled"] is (how == "cross")
    assert manifest["built_under_emulation"] is (how == "emulated")
    compiler = manifest["toolchain"]["compiler"]
    assert ("aarch64-linux-gnu-gcc" in compiler) is (how == "cross"), compiler
    assert "libmunge2" in manifest["runtime_packages"]
    machines = elf_machines(build.artifact)
    assert len(machines) > 100
    assert {machine for machine in machines.values()} == {"EM_AARCH64"}, [
        name for name, machine in machines.items() if machine != "EM_AARCH64"
    ]
