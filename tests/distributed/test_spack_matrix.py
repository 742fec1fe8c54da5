"""`build-matrix --engine spack --scheduler` on the real local Dask cluster, with a shared `file://` buildcache.

Two Spack cells (trixie, Slurm 24.11.5, `--os-packages all`, `--gpu both`) publish their dependencies, signed, to the
buildcache that both also read; each builds on its own worker and Docker engine. The matrix orders the GPU cell after
the CPU cell, so the dependencies Spack builds for the CPU cell (http-parser and lz4: the site file makes them
buildable, their Debian orig tarballs are the source mirror; Spack's compiler-wrapper and gcc-runtime) are installed
as binaries by the GPU cell, which compiles only Slurm.

Local only (CI has no Spack): the inputs of tests/spack/test_spack_build.py, and the two extra engines. About 35
minutes cold: each engine builds its Spack toolchain image.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slurm_factory.buildcache import SPEC_MANIFESTS, spec_target
from tests.conftest import slurm_source_tarball
from tests.distributed.cluster import DaskCluster
from tests.e2e.helpers import cli_environment, make_throwaway_key, report_measurement
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
    pytest.mark.distributed,
    NEEDS_SPACK,
    NEEDS_SOURCE_MIRROR,
]

MATRIX_TIMEOUT = 3 * 3600
CPU_CELL, GPU_CELL = "24.11-trixie", "24.11-trixie-gpu"


def test_spack_cells_share_one_buildcache_across_workers(
    dask_cluster: DaskCluster, project: str, tmp_path: Path
) -> None:
    for home in dask_cluster.homes.values():
        source_mirror(home)
    site = tmp_path / "site-packages.yaml"
    site.write_text(SITE_FILE, encoding="utf-8")
    (tmp_path / "key").mkdir()
    key = make_throwaway_key(tmp_path / "key")
    shared_dir = tmp_path / "shared-buildcache"
    shared_dir.mkdir()
    shared = shared_dir.as_uri()
    command = [
        sys.executable, "-m", "slurm_factory", "build-matrix", "--json", "--scheduler", dask_cluster.scheduler_address,
        "--engine", "spack", "--toolchain", "trixie", "--slurm-version", "24.11.5", "--gpu", "both",
        "--slurm-source", str(slurm_source_tarball()), "--os-packages", "all", "--spack-packages", str(site),
        "--spack-source", str(SPACK_SOURCE), "--spack-packages-source", str(PACKAGES_SOURCE),
        "--python-wheels", str(wheels_for_trixie(tmp_path / "wheels")),
        "--buildcache", "deps", "--buildcache-url", shared, "--publish", "deps", "--publish-url", shared,
        "--signing-key", key.fingerprint, "--gpg-private-key", f"@{key.key_file}",
        "--gpg-passphrase-file", str(key.passphrase_file),
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(
        command,
        env=cli_environment(tmp_path / "requester", project),
        capture_output=True,
        text=True,
        timeout=MATRIX_TIMEOUT,
        check=False,
    )
    seconds = time.monotonic() - started
    assert done.returncode == 0, f"matrix failed:\n{done.stderr[-4000:]}\n{done.stdout[-6000:]}"
    cells = {cell["name"]: cell for cell in json.loads(done.stdout)["cells"]}
    assert set(cells) == {CPU_CELL, GPU_CELL}
    assert all(cell["state"] == "built" for cell in cells.values()), cells
    logs = {name: Path(cell["result"]["log"]).read_text(encoding="utf-8") for name, cell in cells.items()}
    shared_deps = _compiled(logs[CPU_CELL]) - {"slurm"}
    assert {"http-parser", "lz4"} <= shared_deps, "the site file's packages were not built from source"
    for name in shared_deps:
        assert f"==> Extracting {name}-" in logs[GPU_CELL], f"{name} was not installed from the shared buildcache"
    assert _compiled(logs[GPU_CELL]) == {"slurm"}, "the GPU cell compiled more than Slurm"
    manifests = {path.parent.name: path for path in (shared_dir / SPEC_MANIFESTS).rglob("*.spec.manifest.json")}
    assert shared_deps <= set(manifests), manifests
    assert "slurm" not in manifests, "--publish deps pushes the dependencies only"
    for name in shared_deps:
        assert manifests[name].read_text().startswith("-----BEGIN PGP SIGNED MESSAGE-----"), f"{name} is unsigned"
        assert spec_target(shared_dir, manifests[name], name) == "x86_64_v2"
    report_measurement(
        f"build-matrix --engine spack --scheduler (2 workers, shared file:// buildcache; trixie 24.11.5 --gpu both "
        f"--os-packages all): {seconds:.0f}s; "
        + ", ".join(
            f"{name} {cell['seconds']:.0f}s on {cell['where']} (install "
            f"{cell['result']['durations'].get('install', 0):.0f}s)"
            for name, cell in cells.items()
        )
    )


def _compiled(log: str) -> set[str]:
    """The packages Spack built from source: each runs its phases (`==> NAME: Executing phase: 'build'`), where one
    installed from a buildcache is extracted instead."""
    return set(re.findall(r"==> (?:\d+: )?([\w.+-]+): Executing phase", log))
