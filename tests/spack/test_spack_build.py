"""A real Spack build of Slurm, end to end, through the CLI: trixie, Slurm 24.11.5, `--os-packages all`.

A site file (`--spack-packages`) makes http-parser, jansson, lz4 and libevent buildable, so Spack builds the
libraries of the stack the OS would otherwise supply whose Debian orig tarballs carry Spack's exact sha256 (from
`scripts/testenv spack-sources`, put into the source mirror): relocation of Spack-built libraries is exercised,
not only Slurm's own. The cold build is verified (static, relocated, two-node cluster with MPI over PMIx, Lmod)
and pushes its binaries signed to the local buildcache; a second build of the same request with
`--enable-hierarchy --buildcache all` in a fresh container installs everything from that buildcache, compiles
nothing, and is verified through Spack's hierarchical Lmod tree. A last test concretizes trixie 25.11 in the
toolchain image of each `--os-packages` mode and reports how many packages Spack would build.

Local only (CI has no Spack): needs SLURM_FACTORY_TEST_SPACK_SOURCE and SLURM_FACTORY_TEST_SPACK_PACKAGES_SOURCE
(Spack v1.1.0 and spack-packages at the pinned commit, checkouts or tarballs), SLURM_FACTORY_TEST_SLURM_SOURCE and
SLURM_FACTORY_TEST_SPACK_SOURCES (the directory `scripts/testenv spack-sources` prints). About 20 minutes cold.
"""

from __future__ import annotations

import dataclasses
import hashlib
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
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from slurm_factory.builder import _ensure_toolchain_image
from slurm_factory.config import Settings
from slurm_factory.docker_engine import DockerSession
from slurm_factory.engines.container import run_build
from slurm_factory.plan import PlanFile, layout, make_plan
from slurm_factory.progress import BuildMonitor, SilentDisplay
from slurm_factory.request import make_request
from tests.conftest import slurm_source_tarball
from tests.e2e.helpers import (
    Build,
    ThrowawayKey,
    make_throwaway_key,
    remove_project,
    report_measurement,
    run_cli,
)
from tests.spack.inputs import (
    NEEDS_SOURCE_MIRROR,
    NEEDS_SPACK,
    PACKAGES_SOURCE,
    SITE_FILE,
    SPACK_BUILT,
    SPACK_SOURCE,
    source_mirror,
    wheels_for_trixie,
)

DATA = Path(__file__).parent / "data"
pytestmark = [
    pytest.mark.spack,
    pytest.mark.docker,
    NEEDS_SPACK,
    NEEDS_SOURCE_MIRROR,
]


@dataclass
class SpackBuilds:
    cold: Build
    rebuild: Build
    key: ThrowawayKey
    home: Path
    tree: Path
    flat: Build


def _spack_build(home: Path, project: str, *options: str) -> Build:
    started = time.monotonic()
    done = run_cli(home, project, "build-slurm", "--json", *options)
    seconds = time.monotonic() - started
    assert done.returncode == 0, f"build failed:\n{done.stderr[-6000:]}\n{done.stdout[-3000:]}"
    result = json.loads(done.stdout)
    log_text = Path(result["log"]).read_text(encoding="utf-8")
    return Build(home, project, result, seconds, log_text, done.stdout + done.stderr)


@pytest.fixture(scope="module")
def spack_builds(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[SpackBuilds]:
    scratch = tmp_path_factory.mktemp("spack-build")
    home = scratch / "home"
    source_mirror(home)
    site = scratch / "site-packages.yaml"
    site.write_text(SITE_FILE, encoding="utf-8")
    key = make_throwaway_key(tmp_path_factory.mktemp("spack-key"))
    common = (
        "--toolchain", "trixie", "--slurm-version", "24.11.5", "--slurm-source", str(slurm_source_tarball()),
        "--os-packages", "all", "--spack-packages", str(site), "--verify",
        "--spack-source", str(SPACK_SOURCE), "--spack-packages-source", str(PACKAGES_SOURCE),
        "--python-wheels", str(wheels_for_trixie(scratch / "wheels")),
    )  # fmt: skip
    project = f"sf-spack-{uuid.uuid4().hex[:8]}"
    try:
        cold = _spack_build(
            home, project, *common, "--publish", "all", "--signing-key", key.fingerprint,
            "--gpg-private-key", f"@{key.key_file}", "--gpg-passphrase-file", str(key.passphrase_file),
        )  # fmt: skip
        cold_tree = scratch / "cold"
        with tarfile.open(cold.artifact, "r:gz") as archive:
            archive.extractall(cold_tree, filter="tar")
        rebuild = _spack_build(home, project, *common, "--buildcache", "all", "--enable-hierarchy")
        # The cold build's request from the buildcache (flat modules, not verified again): the same tree.
        unverified = [option for option in common if option != "--verify"]
        flat = _spack_build(home, project, *unverified, "--buildcache", "all")
    finally:
        remove_project(docker_client, project)
    cold_stages, rebuild_stages = cold.result["durations"], rebuild.result["durations"]
    report_measurement(
        f"spack build trixie 24.11.5 --os-packages all: cold {cold.seconds:.0f}s (stages {cold_stages}), tarball "
        f"{cold.result['size'] / 1e6:.1f} MB; rebuild from the buildcache {rebuild.seconds:.0f}s (stages "
        f"{rebuild_stages}) = {rebuild.seconds / cold.seconds:.2f}x cold; the flat rebuild without --verify "
        f"{flat.seconds:.0f}s (stages {flat.result['durations']}) = {flat.seconds / cold.seconds:.2f}x cold"
    )
    yield SpackBuilds(cold, rebuild, key, home, next(cold_tree.iterdir()), flat)


def _checks(build: Build) -> dict[str, dict[str, Any]]:
    verification = build.result["verification"]
    assert verification is not None and verification["passed"], json.dumps(verification, indent=1)[-4000:]
    return {check["name"]: check for check in verification["checks"]}


def test_the_spack_artifact_passes_every_verification_stage(spack_builds: SpackBuilds) -> None:
    checks = _checks(spack_builds.cold)
    stages = ("static: RUNPATH", "static: build prefix", "static: plugins", "relocated: libraries", "cluster: sbatch",
              "cluster: srun -N2", "cluster: MPI over pmix", "cluster: Lmod modulefile")  # fmt: skip
    for name in stages:
        assert checks[name]["passed"], checks[name]
    assert "Spack's flat Lmod tree too" in checks["cluster: Lmod modulefile"]["summary"]
    assert spack_builds.cold.result["manifest"]["engine"] == "spack"


def _runpath_and_needed(path: Path) -> tuple[list[str], list[str]]:
    with path.open("rb") as stream:
        elf = ELFFile(stream)
        runpath: list[str] = []
        needed: list[str] = []
        for section in elf.iter_sections():
            if isinstance(section, DynamicSection):
                for tag in section.iter_tags():
                    if tag.entry.d_tag == "DT_RUNPATH":
                        runpath += str(tag.runpath).split(":")
                    elif tag.entry.d_tag == "DT_NEEDED":
                        needed.append(str(tag.needed))
        return runpath, needed


def test_libraries_spack_built_are_shipped_with_relative_runpaths_and_used(spack_builds: SpackBuilds) -> None:
    tree = spack_builds.tree
    manifest = spack_builds.cold.result["manifest"]
    external = {entry["name"] for entry in manifest["os_externals"]}
    built = {package["name"] for package in manifest["spack_packages"]} - external - {"gcc", "glibc"}
    assert {"slurm", "http-parser", "lz4"} <= built, built
    for library in ("lib/liblz4.so.1", "lib/libhttp_parser.so.2.9"):
        runpath, _ = _runpath_and_needed(tree / library)
        assert runpath and all(entry.startswith("$ORIGIN") for entry in runpath), (library, runpath)
    _, needed = _runpath_and_needed(tree / "sbin/slurmrestd")
    assert "libhttp_parser.so.2.9" in needed
    assert not list(tree.rglob("*.a")) and not list(tree.rglob("*.la"))
    assert not (tree / "lib/libstdc++.so.6").exists(), "the OS compiler's runtime is the host's, not shipped"


def test_the_manifest_lists_what_the_os_supplies_and_what_a_host_must_install(spack_builds: SpackBuilds) -> None:
    manifest = spack_builds.cold.result["manifest"]
    assert manifest["os_packages"] == "all"
    externals = {entry["name"]: entry for entry in manifest["os_externals"]}
    assert externals["pmix"]["prefix"] == "/usr/lib/x86_64-linux-gnu/pmix2"
    assert externals["pmix"]["os_package"] == "libpmix-dev"
    assert externals["cmake"]["detected_by"] == "spack", "a build tool Spack can detect is detected by Spack"
    assert externals["munge"]["detected_by"] == "apt"
    assert not set(SPACK_BUILT) & set(externals), "the site file made these buildable"
    runtime = set(manifest["runtime_packages"])
    # libpmix is dlopened by mpi_pmix (ldd cannot see it) and munged is a daemon: both come from the externals.
    assert {"libpmix2t64", "munge", "libmunge2", "libhwloc15"} <= runtime
    assert "libhttp-parser2.9" not in runtime, "http-parser was built by Spack and is shipped"
    assert any(option == "--with-libcurl" for option in manifest["configure_options"])
    assert {"acct_gather_profile_influxdb.so", "jobcomp_elasticsearch.so"} <= set(manifest["plugins"])


def test_the_signed_push_lands_in_the_local_buildcache(spack_builds: SpackBuilds) -> None:
    buildcache = spack_builds.home / "spack-buildcache"
    manifests = list((buildcache / "v3" / "manifests" / "spec").rglob("*.spec.manifest.json"))
    names = {path.parent.name for path in manifests}
    assert {"slurm", "lz4", "http-parser"} <= names, names
    slurm = next(path for path in manifests if path.parent.name == "slurm")
    assert slurm.read_text().startswith("-----BEGIN PGP SIGNED MESSAGE-----"), "pushed with --key: clearsigned"
    assert "externals" not in names and "munge" not in names, "externals are never pushed"


def test_the_spack_artifact_is_a_release_build(spack_builds: SpackBuilds) -> None:
    """The overlay recipe builds what the native engine builds: release flags and hardening, slurm-factory's
    patches, the contribs and the PAM loaders; the symbols go to the -debug companion."""
    checks = _checks(spack_builds.cold)
    for name in ("static: hardening", "static: debug symbols", "debug: gdb finds the symbols",
                 "cluster: pam_slurm_adopt", "cluster: configless node", "rest: job", "accounting: sacct"):  # fmt: skip
        assert checks[name]["passed"], checks[name]
    manifest = spack_builds.cold.result["manifest"]
    assert [patch["name"] for patch in manifest["patches"]] == [
        "01-relocatable-plugin-dir.patch", "02-mysql-new-handle-after-create-db.patch",
    ]  # fmt: skip
    assert manifest["debug_symbols"]["files"] > 100
    assert Path(spack_builds.cold.result["debug_symbols"]).is_file()
    assert {"pam_slurm_adopt", "sgather", "nss_slurm"} <= set(manifest["contribs"])
    assert "--disable-debug" in manifest["configure_options"]
    tree = spack_builds.tree
    for relative in ("lib/security/pam_slurm_adopt.so", "lib/security/real/pam_slurm_adopt.so", "bin/sgather"):
        assert (tree / relative).exists(), relative
    assert not list(tree.rglob("*.debug")), "the main tarball is stripped"


def test_a_rebuild_from_the_buildcache_compiles_nothing_and_verifies_through_the_hierarchy(
    spack_builds: SpackBuilds,
) -> None:
    log = spack_builds.rebuild.log_text
    assert "==> reusing concretization" in log, "the rebuild solved again"
    assert "==> reusing concretization" not in spack_builds.cold.log_text
    assert "Executing phase" not in log, "a package was compiled instead of installed from the buildcache"
    for name in ("slurm", "lz4", "http-parser"):
        assert f"==> Extracting {name}-" in log and "from binary cache" in log, name
    checks = _checks(spack_builds.rebuild)
    assert "Spack's hierarchy Lmod tree too" in checks["cluster: Lmod modulefile"]["summary"]
    assert checks["cluster: MPI over pmix"]["passed"]
    assert spack_builds.rebuild.result["manifest"]["spack_modules"] == "hierarchy"
    assert spack_builds.rebuild.seconds < spack_builds.cold.seconds


def _member_digests(tarball: Path) -> dict[str, str]:
    with tarfile.open(tarball, "r:gz") as archive:
        return {
            member.name: hashlib.sha256(stream.read()).hexdigest() if (stream := archive.extractfile(member)) else ""
            for member in archive.getmembers()
        }


def test_a_rebuild_from_the_buildcache_ships_the_tree_the_cold_build_compiled(spack_builds: SpackBuilds) -> None:
    log = spack_builds.flat.log_text
    assert "==> reusing concretization" in log and "Executing phase" not in log
    assert "==> Extracting slurm-" in log, "installed from the buildcache, as in every fresh build container"
    cold, flat = _member_digests(spack_builds.cold.artifact), _member_digests(spack_builds.flat.artifact)
    differing = sorted(name for name in cold.keys() | flat.keys() if cold.get(name) != flat.get(name))
    # Only the manifest differs: it names the build id, which the mirrors read (--buildcache) are part of.
    assert [name.split("/", 1)[1] for name in differing] == ["manifest.json"], differing


def _concretized(tmp_path: Path, docker_client: docker.DockerClient, mode: str) -> list[dict[str, Any]]:
    """Trixie 25.11's environment of this mode, concretized in its own toolchain image after detecting the OS
    externals as the build does (tests/spack/data/concretize.sh)."""
    settings = Settings(project_name=f"sf-spack-modes-{uuid.uuid4().hex[:6]}", home=tmp_path / mode, jobs=2)
    request = make_request(
        slurm_version="25.11", toolchain="trixie", os_packages=mode, spack_source=SPACK_SOURCE,
        spack_packages_source=PACKAGES_SOURCE, python_wheels=str(wheels_for_trixie(tmp_path / f"wheels-{mode}")),
    )  # fmt: skip
    plan = make_plan(request, settings)
    files = {**plan.container.files, layout.PLAN / "concretize.sh": PlanFile((DATA / "concretize.sh").read_text())}
    command = ("bash", str(layout.PLAN / "concretize.sh"), str(plan.container.install_prefix))
    plan = dataclasses.replace(plan, container=dataclasses.replace(plan.container, files=files, command=command))
    settings.ensure_dirs()
    session = DockerSession(settings.project_name)
    try:
        with BuildMonitor(tmp_path / f"{mode}.log", SilentDisplay()) as monitor:
            _ensure_toolchain_image(plan, session, monitor, home=settings.home)
            output = run_build(plan, session, monitor, scratch=tmp_path)
    finally:
        remove_project(docker_client, settings.project_name)
    return list(json.loads(output.meta["spack.lock"])["concrete_specs"].values())


def test_os_packages_modes_shrink_what_spack_builds(tmp_path: Path, docker_client: docker.DockerClient) -> None:
    built = {}
    for mode in ("none", "build", "all"):
        specs = _concretized(tmp_path, docker_client, mode)
        built[mode] = sorted(spec["name"] for spec in specs if not spec.get("external"))
        report_measurement(f"trixie 25.11 --os-packages {mode}: {len(specs)} nodes, Spack builds {len(built[mode])}")
    assert len(built["none"]) > len(built["build"]) > len(built["all"])
    for tool in ("cmake", "autoconf", "perl", "python", "bison", "meson"):
        assert tool in built["none"] and tool not in built["build"], tool
    for library in ("openssl", "curl", "munge", "pmix", "hwloc"):
        assert library in built["build"] and library not in built["all"], library
    assert "slurm" in built["all"]
