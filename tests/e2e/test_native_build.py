"""End to end: `slurm-factory build-slurm --engine native` builds Slurm 24.11.5 on trixie for real, and the
artifact runs from another prefix in a fresh container that has only the runtime packages.

Timings are printed (cold build, warm rebuild with ccache, tarball size), never asserted.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import docker
import pytest

from slurm_factory.docker_engine import PROJECT_LABEL
from tests.conftest import BASE_IMAGE, slurm_source_tarball
from tests.e2e.helpers import ARTIFACT, ROOT, Build, report_measurement, run_cli
from tests.e2e.shared_builds import Builds

HERE = Path(__file__).parent
RELOCATED_PREFIX = "/srv/elsewhere/cluster-software"

pytestmark = [pytest.mark.e2e, pytest.mark.docker]


def _members(artifact: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(artifact, "r:gz") as archive:
        return archive.getmembers()


def _read_member(artifact: Path, name: str) -> bytes:
    with tarfile.open(artifact, "r:gz") as archive:
        extracted = archive.extractfile(name)
        assert extracted is not None, name
        return extracted.read()


def test_artifact_is_written_with_checksum_and_manifest_beside_it(build: Build) -> None:
    assert build.artifact == build.home / "builds" / "by-id" / build.result["build_id"] / ARTIFACT
    assert build.link == build.home / "builds" / ARTIFACT and build.link.is_symlink()
    checksum = build.artifact.with_name(ARTIFACT + ".sha256").read_text()
    assert checksum.split() == [build.result["sha256"], ARTIFACT]
    sidecar = json.loads(build.artifact.with_name(ARTIFACT + ".manifest.json").read_text())
    inside = json.loads(_read_member(build.artifact, f"{ROOT}/manifest.json"))
    # The sidecar also records the verification outcome; the manifest inside the tarball cannot know it.
    assert inside["verified"] is None
    assert sidecar["verified"]["passed"] is True
    assert {**sidecar, "verified": None} == inside == {**build.result["manifest"], "verified": None}
    for directory in (build.artifact.parent, build.link.parent):
        assert not [p for p in directory.iterdir() if p.name.startswith(".")], "temporary files left"


def test_artifact_has_the_documented_layout(build: Build) -> None:
    names = {member.name for member in _members(build.artifact)}
    assert {name.split("/", 1)[0] for name in names} == {ROOT}
    for required in (
        "bin/sinfo",
        "bin/srun",
        "sbin/slurmctld",
        "sbin/slurmd",
        "sbin/slurmstepd",
        "lib/slurm/auth_munge.so",
        "lib/slurm/mpi_pmix.so",
        "lib/slurm/job_submit_lua.so",
        "lib/slurm/cgroup_v2.so",
        "include/slurm/slurm.h",
        "etc/slurm.conf.example",
        "etc/cgroup.conf.example",
        "share/slurm-factory/systemd/slurmd.service.in",
        "sbin/slurm-factory-setup",
        "modules/slurm/24.11.5.lua",
        "manifest.json",
    ):
        assert f"{ROOT}/{required}" in names, required
    assert not [n for n in names if n.endswith((".la", ".a"))], "libtool archives or static libraries shipped"


def test_manifest_records_release_toolchain_and_dependency_versions(build: Build) -> None:
    manifest = build.result["manifest"]
    assert manifest["slurm"]["version"] == "24.11.5"
    assert manifest["slurm"]["sha256"] == "e1a5547edd212c38b5e3230a284133f777b32746551f094aaa81cc4af375e332"
    assert manifest["engine"] == "native"
    assert manifest["toolchain"]["name"] == "trixie"
    assert manifest["toolchain"]["compiler"].startswith("gcc")
    dependencies = {d["name"]: d["version"] for d in manifest["dependencies"]}
    assert {"libmunge2", "libjson-c5", "liblua5.4-0", "libhwloc15"} <= set(dependencies)
    assert all(dependencies.values())
    # mpi_pmix dlopens libpmix.so.2 at run time, so it is a runtime package without being a linked dependency.
    assert {"libpmix2t64", "munge", *dependencies} <= set(manifest["runtime_packages"])
    assert "--without-rpath" in manifest["configure_options"]


def test_no_elf_file_names_the_build_prefix_in_its_runpath(build: Build, tmp_path: Path) -> None:
    with tarfile.open(build.artifact, "r:gz") as archive:
        archive.extractall(tmp_path, filter="tar")
    prefix = build.result["manifest"]["build_prefix"]
    offenders = []
    checked = 0
    for path in (tmp_path / ROOT).rglob("*"):
        if not path.is_file() or path.is_symlink() or path.read_bytes()[:4] != b"\x7fELF":
            continue
        checked += 1
        dynamic = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True).stdout
        for runpath in re.findall(r"\((?:RUNPATH|RPATH)\)\s+Library (?:runpath|rpath): \[(.*)\]", dynamic):
            if any(not entry.startswith("$ORIGIN") for entry in runpath.split(":")) or prefix in runpath:
                offenders.append(f"{path.relative_to(tmp_path)}: {runpath}")
    assert checked > 100
    assert offenders == []


def test_relocated_tree_runs_in_a_fresh_runtime_only_container(
    build: Build, docker_client: docker.DockerClient
) -> None:
    packages = build.result["manifest"]["runtime_packages"]
    started = time.monotonic()
    container = docker_client.containers.create(
        BASE_IMAGE,
        command=["bash", "/check/relocated_check.sh", f"/check/{ARTIFACT}", RELOCATED_PREFIX, *packages],
        network_mode="host",
        labels={PROJECT_LABEL: build.project},
    )
    try:
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as bundle:
            bundle.add(build.artifact, arcname=f"check/{ARTIFACT}")
            bundle.add(HERE / "relocated_check.sh", arcname="check/relocated_check.sh")
        container.put_archive("/", archive.getvalue())
        container.start()
        exit_code = container.wait(timeout=900)["StatusCode"]
        output = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    report_measurement(f"relocated check {time.monotonic() - started:.0f}s")
    assert "MISSING" not in output, output
    assert exit_code == 0, output
    root = f"{RELOCATED_PREFIX}/{ROOT}"
    assert "ldd: every library found" in output
    assert "slurmctld: slurm 24.11.5" in output
    assert "slurmd: slurm 24.11.5" in output
    assert "sinfo: slurm 24.11.5" in output
    assert "users: slurm 401, slurmrestd 402" in output, "slurm-factory-setup --users takes the documented ids"
    assert "PluginDir lines: 0" in output, "the relocated tree finds its plugins without PluginDir"
    assert f"ExecStart={root}/sbin/slurmd --systemd -d {root}/sbin/slurmstepd $SLURMD_OPTIONS" in output
    assert f"module: SLURM_ROOT={root} sinfo={root}/bin/sinfo slurmd={root}/sbin/slurmd" in output


def test_no_cache_rebuild_has_the_same_build_id(builds: Builds) -> None:
    assert builds.warm.result["build_id"] == builds.cold.result["build_id"]
    assert builds.warm.result["reused"] is False


def test_tampered_source_is_rejected_before_any_container_starts(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    tampered = tmp_path / "slurm-24.11.5.tar.gz"
    data = bytearray(slurm_source_tarball().read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    project = f"sf-e2e-tamper-{uuid.uuid4().hex[:8]}"
    done = run_cli(
        tmp_path / "home",
        project,
        "build-slurm",
        "--engine",
        "native",
        "--toolchain",
        "trixie",
        "--slurm-version",
        "24.11.5",
        "--slurm-source",
        str(tampered),
    )
    assert done.returncode == 2, done.stderr
    assert "does not match Slurm 24.11.5" in done.stderr
    assert "Traceback" not in done.stderr
    label = {"label": f"{PROJECT_LABEL}={project}"}
    assert docker_client.containers.list(all=True, filters=label) == []
    assert docker_client.images.list(filters=label) == []
    assert not list((tmp_path / "home" / "spack-sourcecache").rglob("*.tar.gz")), "tampered tarball was cached"
