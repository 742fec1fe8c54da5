"""End to end: upgrades. In CI, the refusals (before anything is built or started): a release outside SchedMD's
compatibility window, a downgrade. Locally (SLURM_FACTORY_TEST_UPGRADE_SOURCE: SchedMD's 25.11.7 archive), a real
in-place upgrade of the verification cluster from the e2e build (24.11.5) to 25.11.7."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import docker
import pytest

from slurm_factory.docker_engine import PROJECT_LABEL
from slurm_factory.exceptions import EXIT_USAGE
from tests.e2e.helpers import ARTIFACT, ROOT, Build, repack, report_measurement, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

UPGRADE_SOURCE = os.environ.get("SLURM_FACTORY_TEST_UPGRADE_SOURCE")


def _claiming(build: Build, tmp_path: Path, version: str, tag: str) -> Path:
    """The e2e artifact with a manifest that says it is another release (what the refusal reads)."""

    def relabel(root: Path) -> None:
        manifest = root / "manifest.json"
        data = json.loads(manifest.read_text())
        data["slurm"].update(version=version, series=version.rsplit(".", 1)[0], tag=tag)
        manifest.write_text(json.dumps(data))

    (tmp_path / "old").mkdir()
    return repack(build.artifact, tmp_path / "old" / ARTIFACT, tmp_path / "tree", relabel)


def _no_containers(client: docker.DockerClient, project: str) -> None:
    label = {"label": f"{PROJECT_LABEL}={project}"}
    assert client.containers.list(all=True, filters=label) == []


def test_an_upgrade_from_22_05_to_24_11_is_refused_before_anything_builds(
    build: Build, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    old = _claiming(build, tmp_path, "22.05.8", "22-05-8-1")
    project = f"sf-e2e-upgrade-{uuid.uuid4().hex[:8]}"
    home = tmp_path / "home"

    done = run_cli(home, project, "build-slurm", "--engine", "native", "--toolchain", "trixie", "--slurm-version",
                   "24.11.5", "--verify", "--upgrade-from", str(old))  # fmt: skip

    assert done.returncode == EXIT_USAGE, done.stderr
    assert "an upgrade from Slurm 22.05.8 to 24.11.5 is not supported" in done.stderr
    assert "from its own patch releases and from 23.02, 23.11, 24.05" in done.stderr
    assert "Traceback" not in done.stderr
    _no_containers(docker_client, project)
    assert not (home / "builds").exists() or not list((home / "builds").rglob("*.tar.gz")), "something was built"


def test_verify_refuses_a_downgrade_before_any_container_starts(
    build: Build, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    newer = _claiming(build, tmp_path, "25.11.7", "25-11-7-1")
    project = f"sf-e2e-downgrade-{uuid.uuid4().hex[:8]}"

    done = run_cli(tmp_path / "home", project, "verify", str(build.artifact), "--upgrade-from", str(newer))

    assert done.returncode == EXIT_USAGE, done.stderr
    assert "Slurm 25.11.7 to 24.11.5 is a downgrade" in done.stderr
    _no_containers(docker_client, project)


@pytest.mark.skipif(UPGRADE_SOURCE is None, reason="SLURM_FACTORY_TEST_UPGRADE_SOURCE unset: a real upgrade needs "
                    "SchedMD's 25.11.7 archive (git archive of the tag | gzip -n; local test)")  # fmt: skip
def test_a_real_upgrade_from_24_11_5_to_25_11_7_keeps_the_held_job_the_reservation_and_accounting(
    build: Build, tmp_path: Path
) -> None:
    assert UPGRADE_SOURCE is not None
    done = run_cli(
        build.home, build.project, "build-slurm", "--engine", "native", "--toolchain", "trixie", "--slurm-version",
        "25.11.7", "--slurm-source", UPGRADE_SOURCE, "--verify", "--upgrade-from", str(build.artifact), "--json",
        timeout=5400,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    checks = {entry["name"]: entry for entry in result["verification"]["checks"]}
    for name in ("upgrade: old release", "upgrade: database converted", "upgrade: state kept", "rest: job"):
        assert checks[name]["passed"] is True, checks[name]
    assert ROOT.replace("24.11.5", "25.11.7") in result["manifest"]["root"]
    verify = result["durations"].get("verify", 0.0)
    report_measurement(
        f"upgrade 24.11.5 -> 25.11.7: verify {verify:.0f}s, build {result['durations']['total'] - verify:.0f}s"
    )
