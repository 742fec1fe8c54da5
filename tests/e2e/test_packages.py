"""End to end: `--package deb` for trixie 24.11.5 as a site uses it. Release 1 is built and published into a
signed file:// apt repository; release 2 is built, published beside it and verified — apt installs release 1 from
the repository on the check cluster, the cluster runs, apt upgrades it in place to release 2, and the same cluster
checks as the tarball's run on the upgraded nodes. Release 1 rebuilt from cold gives the same bytes."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import slurm_source_tarball
from tests.e2e.helpers import ThrowawayKey, native_build, report_measurement
from tests.e2e.shared_builds import Builds

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

FIRST, SECOND = "24.11.5-1+sf.trixie", "24.11.5-2+sf.trixie"


@dataclass
class DebBuild:
    result: dict[str, Any]
    seconds: float

    @property
    def packages(self) -> dict[str, Any]:
        packages = self.result["packages"]
        assert isinstance(packages, dict)
        return packages

    @property
    def directory(self) -> Path:
        return Path(self.packages["stored"])

    def deb(self, name: str) -> Path:
        [found] = self.directory.glob(f"{name}_*.deb")
        return found


@dataclass
class PackageBuilds:
    first: DebBuild
    second: DebBuild  # verified: installed the first from the repository, upgraded in place
    again: DebBuild  # the second's request once more: the stored set, published again
    rebuilt: DebBuild  # the first's request with --no-cache
    first_digests: dict[str, str]
    mirror: Path
    key: ThrowawayKey


def _deb_build(builds: Builds, mirror: Path, release: str, *extra: str) -> DebBuild:
    key = builds.key
    built = native_build(
        builds.cold.home,
        builds.cold.project,
        slurm_source_tarball(),
        "--package",
        "deb",
        "--package-release",
        release,
        "--signing-key",
        key.fingerprint,
        "--gpg-private-key",
        f"@{key.key_file}",
        "--gpg-passphrase-file",
        str(key.passphrase_file),
        "--publish",
        "slurm",
        "--publish-url",
        mirror.as_uri(),
        *extra,
    )
    return DebBuild(built.result, built.seconds)


@pytest.fixture(scope="module")
def package_builds(builds: Builds, tmp_path_factory: pytest.TempPathFactory) -> PackageBuilds:
    """In the e2e builds' home and project: their toolchain image is reused, the packaging image and the package
    compile are new (other paths than the tarball's, so the ccache starts cold for them)."""
    mirror = tmp_path_factory.mktemp("apt-mirror")
    first = _deb_build(builds, mirror, "1")
    digests = {entry["file"]: entry["sha256"] for entry in first.packages["packages"]}
    second = _deb_build(builds, mirror, "2", "--verify")
    again = _deb_build(builds, mirror, "2")
    rebuilt = _deb_build(builds, mirror, "1", "--no-cache")
    durations = second.packages["durations"]
    report_measurement(
        f"deb packages: release 1 {first.seconds:.0f}s (stages {first.packages['durations']}); release 2 with "
        f"--verify {second.seconds:.0f}s (verify {durations.get('verify', 0):.0f}s); the stored set published again "
        f"{again.seconds:.1f}s; release 1 --no-cache {rebuilt.seconds:.0f}s; {len(digests)} packages, "
        f"{first.packages['size'] / 1e6:.1f} MB; lintian {first.packages['lintian']}"
    )
    return PackageBuilds(first, second, again, rebuilt, digests, mirror, builds.key)


def _control(deb: Path, field: str) -> str:
    done = subprocess.run(["dpkg-deb", "--field", str(deb), field], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _contents(deb: Path) -> list[str]:
    done = subprocess.run(["dpkg-deb", "--contents", str(deb)], capture_output=True, text=True, check=True)
    return [line.split()[-1].removeprefix(".") for line in done.stdout.splitlines() if line.split()]


def _control_file(deb: Path, name: str) -> str:
    done = subprocess.run(["dpkg-deb", "--info", str(deb), name], capture_output=True, text=True, check=False)
    return done.stdout if done.returncode == 0 else ""


def test_the_packages_are_lintian_clean_with_every_override_reported(package_builds: PackageBuilds) -> None:
    lintian = package_builds.first.packages["lintian"]
    assert "E" not in lintian and "W" not in lintian, lintian
    report = (package_builds.first.directory / "lintian.txt").read_text(encoding="utf-8")
    overridden = [line for line in report.splitlines() if line.startswith("O: ")]
    assert overridden and lintian["O"] == len(overridden)
    assert any("custom-library-search-path RUNPATH /usr/lib/x86_64-linux-gnu/slurm" in line for line in overridden)
    shipped = _contents(package_builds.first.deb("slurm-smd-client"))
    assert "/usr/share/lintian/overrides/slurm-smd-client" in shipped


def test_the_packages_install_in_the_fhs_layout_with_units_conffiles_and_derived_dependencies(
    package_builds: PackageBuilds,
) -> None:
    first = package_builds.first
    controller = first.deb("slurm-smd-slurmctld")
    assert {
        "/usr/sbin/slurmctld",
        "/usr/lib/systemd/system/slurmctld.service",
        "/etc/default/slurmctld",
        "/var/spool/slurmctld/",
    } <= set(_contents(controller))
    assert _control_file(controller, "conffiles").split() == ["/etc/default/slurmctld"]
    assert _control(controller, "Version") == FIRST
    base = first.deb("slurm-smd")
    depends = _control(base, "Depends")
    assert "libmunge2" in depends and "libmariadb3" in depends, "dpkg-shlibdeps derived the libraries linked"
    assert "slurm-wlm-basic-plugins" in _control(base, "Conflicts")
    plugins = [path for path in _contents(base) if path.startswith("/usr/lib/x86_64-linux-gnu/slurm/")]
    assert "/usr/lib/x86_64-linux-gnu/slurm/accounting_storage_mysql.so" in plugins
    assert "/usr/share/doc/slurm-smd/examples/slurm.conf" in _contents(base)
    assert "adduser --system" in _control_file(base, "postinst")
    for path in _contents(first.deb("slurm-smd-slurmd")):
        assert not path.startswith(("/opt", "/usr/local")), path
    assert first.deb("slurm-smd-slurmctld-dbgsym").is_file()


def test_the_repository_keeps_both_releases_installable_and_is_signed(
    package_builds: PackageBuilds, tmp_path: Path
) -> None:
    repository = package_builds.mirror / "apt"
    dist = repository / "dists" / "trixie"
    index = dist / "main" / "binary-amd64"
    packages = (index / "Packages").read_text(encoding="utf-8")
    versions = [line.split(": ", 1)[1] for line in packages.splitlines() if line.startswith("Version: ")]
    assert set(versions) == {FIRST, SECOND}
    assert gzip.decompress((index / "Packages.gz").read_bytes()).decode() == packages
    digest = hashlib.sha256(packages.encode()).hexdigest()
    assert (index / "by-hash" / "SHA256" / digest).read_text(encoding="utf-8") == packages
    assert f" {digest} " in (dist / "Release").read_text(encoding="utf-8")
    for deb in package_builds.first.packages["packages"]:
        assert (repository / "pool" / "trixie" / "main" / deb["file"]).is_file()
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch"]
    try:
        subprocess.run(
            [*gpg, "--import", str(repository / "slurm-factory-archive-keyring.asc")], check=True, capture_output=True
        )
        inline = subprocess.run([*gpg, "--verify", str(dist / "InRelease")], capture_output=True, text=True)
        detached = subprocess.run(
            [*gpg, "--verify", str(dist / "Release.gpg"), str(dist / "Release")], capture_output=True, text=True
        )
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)
    assert inline.returncode == 0 and detached.returncode == 0, inline.stderr + detached.stderr
    assert package_builds.key.fingerprint in inline.stderr.replace(" ", "")


def _checks(build: DebBuild) -> dict[str, dict[str, Any]]:
    verification = build.packages["verification"]
    assert verification is not None
    return {entry["name"]: entry for entry in verification["checks"]}


def test_verification_installs_release_1_with_apt_and_upgrades_it_in_place_to_release_2(
    package_builds: PackageBuilds,
) -> None:
    checks = _checks(package_builds.second)
    failed = {name: entry["summary"] for name, entry in checks.items() if not entry["passed"]}
    assert not failed, failed
    assert "installed by apt-get" in checks["apt: install from the repository"]["summary"]
    assert FIRST in checks["apt: install from the repository"]["summary"]
    upgrade = checks["upgrade: apt upgrade in place"]["summary"]
    assert f"{FIRST} → {SECOND}" in upgrade and "none stopped or restarted" in upgrade
    assert "/etc/slurm/slurm.conf" in upgrade and "/etc/default/slurmrestd" in upgrade
    assert "apt-get update refused it" in checks["apt: a bad signature is refused"]["summary"]
    for name in ("upgrade: earlier release daemons", "upgrade: state kept", "cluster: daemons",
                 "cluster: configless node", "cluster: login node (sackd)", "cluster: srun", "cluster: sbatch",
                 "cluster: srun -N2", "cluster: MPI over pmix", "accounting: associations", "accounting: sacct",
                 "cluster: pam_slurm_adopt", "rest: job", "rest: refused without a valid token",
                 "debug: gdb finds the symbols"):  # fmt: skip
        assert name in checks, (name, sorted(checks))
    assert "cluster: Lmod modulefile" not in checks, "packages put the programs on PATH; they ship no modulefile"
    report = json.loads((package_builds.second.directory / "verify.json").read_text(encoding="utf-8"))
    assert report["passed"] is True


def test_a_stored_set_is_reused_and_published_again_without_a_change(package_builds: PackageBuilds) -> None:
    again = package_builds.again.packages
    assert again["reused"] is True and again["build_id"] == package_builds.second.packages["build_id"]
    assert again["publication"]["added"] == []
    assert "compile" not in again["durations"]


def test_two_builds_of_one_request_give_byte_identical_packages(package_builds: PackageBuilds) -> None:
    rebuilt = package_builds.rebuilt.packages
    assert rebuilt["reused"] is False and "compile" in rebuilt["durations"]
    digests = {entry["file"]: entry["sha256"] for entry in rebuilt["packages"]}
    assert digests == package_builds.first_digests
    assert rebuilt["publication"]["added"] == [], "the same bytes are already in the pool"
