"""End to end: `--gpu` on trixie builds gpu_nvml.so and gpu_rsmi.so against Debian's NVML (non-free) and ROCm SMI
headers, ships no vendor library, and the artifact still verifies on a host without any GPU driver."""

from __future__ import annotations

import tarfile
import uuid
from collections.abc import Iterator

import docker
import pytest

from tests.conftest import slurm_source_tarball
from tests.e2e.helpers import Build, native_build, remove_project, report_measurement

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

GPU_ARTIFACT = "slurm-24.11-trixie-gpu-software.tar.gz"
GPU_ROOT = "slurm-24.11.5-trixie-gpu"


@pytest.fixture(scope="module")
def gpu_build(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Build]:
    home = tmp_path_factory.mktemp("e2e-gpu-home")
    project = f"sf-e2e-gpu-{uuid.uuid4().hex[:8]}"
    try:
        build = native_build(home, project, slurm_source_tarball(), "--gpu", "--verify")
        report_measurement(f"native --gpu build + verify {build.seconds:.0f}s (stages {build.result['durations']})")
        yield build
    finally:
        remove_project(docker_client, project)


def test_gpu_artifact_has_both_gpu_plugins_and_no_vendor_library(gpu_build: Build) -> None:
    assert gpu_build.artifact.name == GPU_ARTIFACT
    with tarfile.open(gpu_build.artifact, "r:gz") as archive:
        names = set(archive.getnames())
    assert f"{GPU_ROOT}/lib/slurm/gpu_nvml.so" in names
    assert f"{GPU_ROOT}/lib/slurm/gpu_rsmi.so" in names
    vendor = [n for n in names if "libnvidia" in n or "rocm_smi" in n or "libcuda" in n]
    assert vendor == []


def test_gpu_manifest_never_makes_a_vendor_library_a_dependency(gpu_build: Build) -> None:
    manifest = gpu_build.result["manifest"]
    assert manifest["gpu"] is True
    assert "--with-nvml" in manifest["configure_options"]
    assert {"gpu_nvml.so", "gpu_rsmi.so"} <= set(manifest["plugins"])
    # Slurm dlopens NVML and ROCm SMI; whatever links them directly is recorded as host-provided, never as a package.
    assert all(name.startswith(("libnvidia-ml", "librocm_smi64", "libcuda")) for name in manifest["host_libraries"])
    packages = {d["name"] for d in manifest["dependencies"]} | set(manifest["runtime_packages"])
    assert not [p for p in packages if "nvidia" in p or "rocm" in p]


def test_gpu_artifact_verifies_on_a_host_without_gpu_drivers(gpu_build: Build) -> None:
    verification = gpu_build.result["verification"]
    assert verification["passed"] is True
    checks = {check["name"]: check for check in verification["checks"]}
    assert checks["static: plugins"]["passed"] is True  # gpu_nvml.so and gpu_rsmi.so are expected with --gpu
    assert checks["cluster: MPI over pmix"]["passed"] is True
