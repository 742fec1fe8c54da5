"""End to end: `--gpu` on trixie builds gpu_nvml.so and gpu_rsmi.so against Debian's NVML (non-free) and ROCm SMI
headers, ships no vendor library, and the artifact still verifies on a host without any GPU driver.

The GPU build is one cell of a real `build-matrix --gpu both --jobs 2 --verify`: both cells build at once on this
engine (one toolchain image each), both verify, and the matrix reports each."""

from __future__ import annotations

import datetime as dt
import json
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.conftest import slurm_source_tarball
from tests.e2e.helpers import Build, remove_project, report_measurement, run_cli
from tests.e2e.shared_builds import seed_ccache

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

GPU_ARTIFACT = "slurm-24.11-trixie-gpu-software.tar.gz"
GPU_ROOT = "slurm-24.11.5-trixie-gpu"


@pytest.fixture(scope="module")
def gpu_matrix(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory, warm_ccache: Path
) -> Iterator[Matrix]:
    """Both cells at once in a home whose ccache is a copy of the e2e build's (the CPU cell is that build's
    request; the GPU cell shares most of its objects)."""
    home = tmp_path_factory.mktemp("e2e-gpu-home")
    seed_ccache(home, warm_ccache)
    project = f"sf-e2e-gpu-{uuid.uuid4().hex[:8]}"
    try:
        started = time.monotonic()
        done = run_cli(
            home,
            project,
            "build-matrix",
            *("--engine", "native", "--toolchain", "trixie", "--slurm-version", "24.11.5", "--gpu", "both"),
            *("--slurm-source", str(slurm_source_tarball()), "--verify", "--jobs", "2", "--json"),
        )
        seconds = time.monotonic() - started
        assert done.returncode == 0, f"matrix failed:\n{done.stderr[-4000:]}\n{done.stdout[-6000:]}"
        cells = {cell["name"]: cell for cell in json.loads(done.stdout)["cells"]}
        report_measurement(
            f"build-matrix --gpu both --jobs 2 --verify (native trixie 24.11.5): {seconds:.0f}s; cells "
            + ", ".join(f"{name} {cell['seconds']:.0f}s" for name, cell in cells.items())
        )
        yield Matrix(home, project, cells, seconds)
    finally:
        remove_project(docker_client, project)


@dataclass
class Matrix:
    home: Path
    project: str
    cells: dict[str, dict[str, Any]]
    seconds: float


@pytest.fixture(scope="module")
def gpu_build(gpu_matrix: Matrix) -> Build:
    cell = gpu_matrix.cells["24.11-trixie-gpu"]
    return Build(gpu_matrix.home, gpu_matrix.project, cell["result"], cell["seconds"], "", "")


def test_the_matrix_built_and_verified_both_cells_at_once(gpu_matrix: Matrix) -> None:
    assert list(gpu_matrix.cells) == ["24.11-trixie", "24.11-trixie-gpu"]
    for name, cell in gpu_matrix.cells.items():
        assert cell["state"] == "built", cell
        assert cell["verified"] is True
        assert Path(cell["artifact"]) == gpu_matrix.home / "builds" / f"slurm-{name}-software.tar.gz"
        assert Path(cell["log"]).is_file()
    # --jobs 2: each cell's build started before the other's ended (the build records say when and how long).
    spans = [_build_span(Path(cell["result"]["stored"])) for cell in gpu_matrix.cells.values()]
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1], spans


def _build_span(stored: Path) -> tuple[dt.datetime, dt.datetime]:
    record = json.loads(Path(f"{stored}.build.json").read_text(encoding="utf-8"))
    started = dt.datetime.fromisoformat(record["built_at"])
    return started, started + dt.timedelta(seconds=record["durations"]["total"])


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
