"""Real Docker: the Spack engine's trixie toolchain image builds up to (not including) fetching Spack, from the
locally bootstrapped base image: OS compiler with Fortran, Lmod, patchelf, git and a Python that makes the venv
Spack's solver (clingo) is installed into."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from slurm_factory.config import Settings
from slurm_factory.docker_engine import DockerSession
from slurm_factory.plan import make_plan
from slurm_factory.request import make_request

pytestmark = pytest.mark.docker


def test_trixie_spack_toolchain_stage_builds_and_has_what_spack_needs(
    project_cleanup: str, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    request = make_request(slurm_version="24.11.5", toolchain="trixie", engine="spack")
    plan = make_plan(request, Settings(project_name=project_cleanup, home=tmp_path))
    session = DockerSession(project_cleanup)
    reference = f"{plan.image.repository}:toolchain-stage"
    lines: list[str] = []
    session.build_image(plan.image.dockerfile, reference, session.labels("toolchain"), lines.append, target="toolchain")
    assert any("Successfully built" in line for line in lines)
    assert not any("git clone" in line or "clingo" in line for line in lines), "the toolchain stage fetches nothing"
    with session.container(reference, ["sleep", "infinity"], role="probe") as box:
        box.start()
        for command, expected in (
            (["gcc", "-dumpfullversion"], "14."),
            (["gfortran", "-dumpfullversion"], "14."),
            (["python3", "-m", "venv", "/tmp/spack-python"], ""),
            (["patchelf", "--version"], "patchelf"),
            (["test", "-f", "/usr/share/lmod/lmod/init/bash"], ""),
            (["git", "--version"], "git version"),
        ):
            code, output = box.run(command)
            assert code == 0, (command, output)
            assert expected in output, (command, output)
