"""End to end: verification of the native artifact passes every check, and each kind of broken artifact fails
with the evidence that names the problem."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest

from slurm_factory.config import Settings
from slurm_factory.docker_engine import PROJECT_LABEL, ROLE_LABEL
from slurm_factory.exceptions import VerificationError
from slurm_factory.verify import verify_artifact
from slurm_factory.verify.images import MPI_BUILD_ROLE
from tests.e2e.helpers import ARTIFACT, ROOT, Build, repack, report_measurement, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

EXPECTED_CHECKS = {
    "static: members",
    "manifest",
    "static: machine type",
    "static: RUNPATH",
    "static: vendor libraries",
    "static: build prefix",
    "static: plugins",
    "static: hardening",
    "static: debug symbols",
    "sbom",
    "images",
    "relocated: libraries",
    "relocated: versions",
    "cluster: database",
    "cluster: install",
    "cluster: daemons",
    "cluster: configless node",
    "cluster: login node (sackd)",
    "accounting: associations",
    "accounting: job without association refused",
    "cluster: srun",
    "cluster: sbatch",
    "cluster: srun --mpi=list",
    "cluster: Lmod modulefile",
    "cluster: srun -N2",
    "cluster: MPI over pmix",
    "accounting: sacct",
    "accounting: QOS limit",
    "rest: ping",
    "rest: job",
    "rest: accounting",
    "rest: refused without a valid token",
    "cluster: pam_slurm_adopt",
    "debug: gdb finds the symbols",
}


def _checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in report["checks"]}


def test_build_with_verify_passes_every_check_and_marks_the_manifest(build: Build) -> None:
    verification = build.result["verification"]
    assert verification["passed"] is True
    assert set(_checks(verification)) == EXPECTED_CHECKS
    assert all(entry["passed"] for entry in verification["checks"])
    sidecar = json.loads(build.artifact.with_name(ARTIFACT + ".manifest.json").read_text())
    assert sidecar["verified"]["passed"] is True
    assert sidecar["verified"]["sha256"] == build.result["sha256"]
    report = json.loads(build.artifact.with_name(ARTIFACT + ".verify.json").read_text())
    assert report["passed"] is True


def test_verify_command_passes_on_the_artifact(build: Build) -> None:
    started = time.monotonic()
    done = run_cli(build.home, build.project, "verify", str(build.artifact), "--json")
    seconds = time.monotonic() - started
    report_measurement(f"slurm-factory verify on a warm machine {seconds:.1f}s (target < 90 s)")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["passed"] is True
    assert set(_checks(report)) == EXPECTED_CHECKS


def _broken_copy(build: Build, tmp_path: Path, change: Callable[[Path], None]) -> Path:
    target = tmp_path / "out" / ARTIFACT
    target.parent.mkdir()
    return repack(build.artifact, target, tmp_path / "tree", change)


def _verify_failure(build: Build, artifact: Path) -> dict[str, dict[str, Any]]:
    settings = Settings(project_name=build.project, home=build.home, jobs=2)
    with pytest.raises(VerificationError) as caught:
        verify_artifact(artifact, settings)
    assert caught.value.exit_code == 1
    assert caught.value.report_path == artifact.with_name(ARTIFACT + ".verify.json")
    report = json.loads(caught.value.report_path.read_text())
    assert report["passed"] is False
    sidecar = json.loads(artifact.with_name(ARTIFACT + ".manifest.json").read_text())
    assert sidecar["verified"]["passed"] is False, "a failed artifact must be marked unverified"
    assert artifact.is_file(), "the artifact stays in place"
    return _checks(report)


def test_absolute_runpath_into_the_build_prefix_fails_the_static_check(build: Build, tmp_path: Path) -> None:
    prefix = build.result["manifest"]["build_prefix"]

    def set_absolute_runpath(root: Path) -> None:
        subprocess.run(["patchelf", "--set-rpath", f"{prefix}/lib/slurm", str(root / "bin/sinfo")], check=True)

    checks = _verify_failure(build, _broken_copy(build, tmp_path, set_absolute_runpath))
    runpath = checks["static: RUNPATH"]
    assert runpath["passed"] is False
    assert any("bin/sinfo" in line and prefix in line for line in runpath["evidence"])
    assert checks["static: plugins"]["passed"] is True


def test_missing_library_fails_the_relocated_check(build: Build, tmp_path: Path) -> None:
    def remove_libslurmfull(root: Path) -> None:
        (root / "lib/slurm/libslurmfull.so").unlink()

    checks = _verify_failure(build, _broken_copy(build, tmp_path, remove_libslurmfull))
    libraries = checks["relocated: libraries"]
    assert libraries["passed"] is False
    assert any(line.startswith("bin/sinfo: libslurmfull.so") for line in libraries["evidence"])


def test_shipped_nvidia_library_fails_the_vendor_check(build: Build, tmp_path: Path) -> None:
    def add_fake_nvml(root: Path) -> None:
        (root / "lib/libnvidia-ml.so.1").write_bytes(b"not really NVML")

    checks = _verify_failure(build, _broken_copy(build, tmp_path, add_fake_nvml))
    vendor = checks["static: vendor libraries"]
    assert vendor["passed"] is False
    assert vendor["evidence"] == ["lib/libnvidia-ml.so.1"]
    assert checks["cluster: daemons"]["passed"] is True


def test_a_symlink_leaving_the_root_fails_the_member_scan_and_nothing_is_unpacked(build: Build, tmp_path: Path) -> None:
    def add_escaping_symlink(root: Path) -> None:
        (root / "lib/escape").symlink_to("../../../../etc")

    checks = _verify_failure(build, _broken_copy(build, tmp_path, add_escaping_symlink))
    members = checks["static: members"]
    assert members["passed"] is False
    assert members["evidence"] == [f"{ROOT}/lib/escape: symlink to ../../../../etc leaves the root"]
    for stage in ("images", "relocated", "cluster"):
        assert checks[stage]["not_run"] is True, "an unsafe tarball is never unpacked in a container"


def test_an_artifact_without_the_slurmdbd_accounting_plugin_fails_the_cluster(build: Build, tmp_path: Path) -> None:
    def remove_accounting_plugin(root: Path) -> None:
        (root / "lib/slurm/accounting_storage_slurmdbd.so").unlink()

    checks = _verify_failure(build, _broken_copy(build, tmp_path, remove_accounting_plugin))
    assert checks["static: plugins"]["passed"] is False
    daemons = checks["cluster: daemons"]
    assert daemons["passed"] is False
    assert any("accounting_storage/slurmdbd" in line for line in daemons["evidence"]), daemons
    assert "cluster: srun" not in checks, "job checks do not run on a cluster that did not start"


def _edit_unit(root: Path, unit: str, old: str, new: str) -> None:
    path = root / f"share/slurm-factory/systemd/{unit}.service.in"
    text = path.read_text()
    assert old in text, f"{unit}: {old!r}"
    path.write_text(text.replace(old, new))


def test_a_slurmd_unit_that_drops_its_options_fails_the_configless_node(build: Build, tmp_path: Path) -> None:
    """The check starts daemons from the shipped units: a unit that ignores SLURMD_OPTIONS (so --conf-server)
    leaves the configless node without configuration, and verification says so."""

    def drop_options(root: Path) -> None:
        _edit_unit(root, "slurmd", " $SLURMD_OPTIONS", "")

    checks = _verify_failure(build, _broken_copy(build, tmp_path, drop_options))
    assert checks["cluster: daemons"]["passed"] is True
    configless = checks["cluster: configless node"]
    assert configless["passed"] is False, configless
    assert "accounting: associations" not in checks


def test_a_slurmrestd_unit_without_jwt_fails_the_rest_checks(build: Build, tmp_path: Path) -> None:
    def drop_jwt(root: Path) -> None:
        _edit_unit(root, "slurmrestd", "Environment=SLURM_JWT=daemon\n", "")

    checks = _verify_failure(build, _broken_copy(build, tmp_path, drop_jwt))
    assert checks["cluster: sbatch"]["passed"] is True
    assert checks["rest: ping"]["passed"] is False, checks["rest: ping"]


def test_verify_leaves_no_containers_or_networks_behind(build: Build, docker_client: docker.DockerClient) -> None:
    label: dict[str, Any] = {"label": f"{PROJECT_LABEL}={build.project}"}
    assert docker_client.containers.list(all=True, filters=label) == []
    assert docker_client.networks.list(filters=label) == []


def test_the_mpi_build_stage_left_behind_by_the_cluster_image_carries_the_project_label(
    build: Build, docker_client: docker.DockerClient
) -> None:
    """The classic builder keeps a multi-stage build's intermediate stage as an untagged image: labelled,
    `clean --full` removes it with the rest of the project."""
    stages = docker_client.images.list(
        filters={"label": [f"{PROJECT_LABEL}={build.project}", f"{ROLE_LABEL}={MPI_BUILD_ROLE}"]}
    )
    assert stages, "no labelled MPI build stage image"
    assert all(not image.tags for image in stages)
