"""Verification of a published package set, from its apt repository as a site installs it.

1. The repository's signature verifies on this host with the published key, and a copy with a word of its
   InRelease changed is refused by apt (and by the host's check).
2. In a fresh container of the toolchain OS's check-cluster image, apt trusts only the published key (`signed-by`)
   and installs every package of the set — or, when the repository holds an earlier release of this Slurm, that
   one, to upgrade from — with their dependencies from the OS's own mirror. The container is saved as the nodes'
   image.
3. The check cluster runs on those nodes (verify/package_cluster.py), upgrading in place from the repository when
   there is an earlier release.

The report is `verify.json` in the stored set's directory; a failure raises `VerificationError` (exit 1).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from slurm_factory.config import Settings
from slurm_factory.docker_engine import NO_NETWORK, DockerSession, RunningContainer
from slurm_factory.exceptions import DockerError, VerificationError
from slurm_factory.packages.apt_repository import PUBLIC_KEY_FILE, AptPublication
from slurm_factory.packages.store import PackageSet, find
from slurm_factory.packages.versions import compare_versions
from slurm_factory.plan.model import Mount, PackagePlan
from slurm_factory.progress import BuildMonitor
from slurm_factory.signing import verify_signature
from slurm_factory.verify import ensure_verify_image
from slurm_factory.verify.artifact_reader import ArtifactUnderTest
from slurm_factory.verify.cluster import Cluster, node_containers
from slurm_factory.verify.containers import database_container, start_database_server
from slurm_factory.verify.images import CHECK_DIR, VerifyImages, node_files, verify_images
from slurm_factory.verify.package_cluster import AptUpgrade, check_package_cluster
from slurm_factory.verify.report import CheckResult, VerificationReport, check

REPORT_FILE = "verify.json"
REPOSITORY_MOUNT = PurePosixPath("/srv/slurm-factory-apt")
KEYRING = PurePosixPath("/etc/apt/keyrings") / PUBLIC_KEY_FILE
SOURCE_LIST = PurePosixPath("/etc/apt/sources.list.d/slurm-factory.list")
# apt with the slurm-factory repository as its only source: what an offline node (the cluster's network has no
# route) can reach, and what proves the packages come from there.
ONLY_OUR_SOURCE = (
    "-o",
    f"Dir::Etc::SourceList={SOURCE_LIST}",
    "-o",
    "Dir::Etc::SourceParts=-",
    "-o",
    "APT::Get::List-Cleanup=0",
)
APT_ENVIRONMENT = {"DEBIAN_FRONTEND": "noninteractive"}
# A modified conffile is kept without a question (dpkg's own default answer for an unchanged package file).
KEEP_CONFFILES = ("-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold")
SIGNATURE_CHECK = "apt: repository signature"
BAD_SIGNATURE_CHECK = "apt: a bad signature is refused"
INSTALL_CHECK = "apt: install from the repository"


@dataclass(frozen=True)
class RepositoryRelease:
    """One version of the set in the repository's index, and its package names."""

    version: str
    packages: tuple[str, ...]


# What a Packages stanza may name (Debian policy's package name and version syntax): anything else is refused
# before it reaches an apt-get command line.
_PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_VERSION = re.compile(r"[0-9][A-Za-z0-9.+~-]*")


def read_index(publication: AptPublication, arch: str) -> list[RepositoryRelease]:
    """The `slurm-smd` releases the repository's Packages index lists, oldest first. The index is read only if
    its sha256 is the one Release (which the signature covers) names for it."""
    dist = publication.repository / "dists" / publication.codename
    relative = f"main/binary-{arch}/Packages"
    data = (dist / relative).read_bytes()
    named = release_sha256(dist / "Release").get(relative)
    if named != hashlib.sha256(data).hexdigest():
        raise VerificationError(
            f"{dist / relative} is not the index {dist / 'Release'} names "
            f"({'no sha256 for it' if named is None else 'its sha256 differs'}): the repository changed after it was "
            "signed"
        )
    by_version: dict[str, list[str]] = {}
    for stanza in data.decode("utf-8").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line.startswith(" "))
        if "Package" not in fields or "Version" not in fields:
            continue
        if not (_PACKAGE_NAME.fullmatch(fields["Package"]) and _VERSION.fullmatch(fields["Version"])):
            raise VerificationError(
                f"{dist / relative} lists {fields['Package']!r} {fields['Version']!r}, not a Debian package name "
                "and version"
            )
        by_version.setdefault(fields["Version"], []).append(fields["Package"])
    ordered = sorted(by_version, key=_VersionKey)
    return [RepositoryRelease(version, tuple(sorted(by_version[version]))) for version in ordered]


def release_sha256(release: Path) -> dict[str, str]:
    """The SHA256 section of a Release file: each index's path (relative to the dist) and its sha256."""
    found: dict[str, str] = {}
    in_section = False
    for line in release.read_text(encoding="utf-8").splitlines():
        if not line.startswith(" "):
            in_section = line.rstrip() == "SHA256:"
            continue
        parts = line.split()
        if in_section and len(parts) == 3:
            found[parts[2]] = parts[0]
    return found


class _VersionKey:
    def __init__(self, version: str) -> None:
        self.version = version

    def __lt__(self, other: _VersionKey) -> bool:
        return compare_versions(self.version, other.version) < 0


def previous_release(releases: list[RepositoryRelease], version: str, *, upstream: str) -> RepositoryRelease | None:
    """The newest release below `version` of the same Slurm (`upstream`): what a site's nodes run before it."""
    earlier = [
        release
        for release in releases
        if compare_versions(release.version, version) < 0 and release.version.split("-", 1)[0] == upstream
    ]
    return earlier[-1] if earlier else None


def package_under_test(plan: PackagePlan, package_set: PackageSet) -> ArtifactUnderTest:
    """What the cluster checks read of the release under test (its OS, arch and base image): the set's manifest in
    the shape of a tarball's. Its `debug_companion` is the slurmctld -dbgsym package: installed, its symbols are in
    /usr/lib/debug, where gdb looks."""
    request = plan.request
    manifest: dict[str, Any] = {
        "arch": request.arch.value,
        "toolchain": {"name": request.toolchain.name, "base_image": request.base_image},
        "slurm": {"version": request.slurm.version},
        "runtime_packages": [],
    }
    debug = next((path for path in package_set.debs if path.name.startswith("slurm-smd-slurmctld-dbgsym_")), None)
    return ArtifactUnderTest(
        path=package_set.directory,
        root="usr",
        manifest=manifest,
        sha256=_sums_digest(package_set),
        toolchain=request.toolchain,
        debug_companion=debug,
    )


def _sums_digest(package_set: PackageSet) -> str:
    return hashlib.sha256((package_set.directory / "SHA256SUMS").read_bytes()).hexdigest()


def verify_packages(
    plan: PackagePlan,
    publication: AptPublication,
    *,
    settings: Settings,
    session: DockerSession,
    monitor: BuildMonitor,
) -> dict[str, Any]:
    """Every check above; the report's JSON (also written beside the set)."""
    package_set = find(plan.artifact_path)
    if package_set is None:
        raise VerificationError(f"the stored package set {plan.artifact_path} is incomplete or changed")
    under_test = package_under_test(plan, package_set)
    report = VerificationReport(f"{plan.artifact_root} for {plan.request.toolchain.name}", under_test.sha256)
    _repository_signature(publication, report)
    releases = read_index(publication, plan.request.arch.value)
    earlier = previous_release(releases, plan.version, upstream=plan.version.split("-", 1)[0])
    new = RepositoryRelease(plan.version, tuple(sorted(entry.package for entry in package_set.files)))
    installed = earlier or new
    try:
        _run_in_containers(
            plan,
            publication,
            under_test,
            report,
            settings=settings,
            session=session,
            monitor=monitor,
            installed=installed,
            new=new,
        )
    except DockerError as error:
        report.checks.append(
            CheckResult(
                "apt: containers",
                passed=False,
                seconds=0.0,
                summary="the check containers could not run",
                evidence=[str(error)],
            )
        )
    path = package_set.directory / REPORT_FILE
    report.write(path)
    if not report.passed:
        failures = report.failures or report.not_run
        raise VerificationError(
            f"{report.artifact} failed verification: {', '.join(failed.name for failed in failures)} — "
            f"{failures[0].summary}",
            report_path=path,
            hint=f"evidence in {path}; the log of the checks is {plan.log_path}",
        )
    monitor.note(f"verified: {len(report.checks)} checks passed; report {path}")
    return report.to_json()


def _repository_signature(publication: AptPublication, report: VerificationReport) -> None:
    dist = publication.repository / "dists" / publication.codename
    with check(report, SIGNATURE_CHECK) as result:
        valid, detail = verify_signature(dist / "Release", dist / "Release.gpg", publication.public_key)
        inline = (dist / "InRelease").read_text(encoding="utf-8")
        if not valid:
            result.fail(f"Release.gpg does not verify with {publication.public_key.name}", [detail])
        elif (dist / "Release").read_text(encoding="utf-8") not in _unarmored(inline):
            result.fail("InRelease does not hold the Release it was signed from")
        else:
            result.ok(f"{dist.relative_to(publication.repository)}/Release.gpg verifies: {detail}")


def _unarmored(inline: str) -> str:
    """The signed text of a clear-signed message (dash-escaping undone)."""
    body = inline.split("\n\n", 1)[1].split("\n-----BEGIN PGP SIGNATURE-----", 1)[0]
    return "\n".join(line[2:] if line.startswith("- ") else line for line in body.splitlines()) + "\n"


def tampered_copy(publication: AptPublication, directory: Path) -> Path:
    """The repository's dists/ with one word of Release and of InRelease's signed text changed (the pool is not
    needed to refuse it): a mirror that was altered after signing."""
    source = publication.repository / "dists"
    target = directory / "dists"
    shutil.copytree(source, target)
    for name in ("InRelease", "Release"):  # Release.gpg stays: it no longer matches
        changed = target / publication.codename / name
        changed.write_text(changed.read_text(encoding="utf-8").replace("Origin: ", "Origin: x", 1), encoding="utf-8")
    return directory


def _run_in_containers(
    plan: PackagePlan,
    publication: AptPublication,
    under_test: ArtifactUnderTest,
    report: VerificationReport,
    *,
    settings: Settings,
    session: DockerSession,
    monitor: BuildMonitor,
    installed: RepositoryRelease,
    new: RepositoryRelease,
) -> None:
    images = verify_images(under_test, settings.project_name, plan.request.base_image)
    toolchain = plan.request.toolchain.name
    for image in (images.database, images.runtime, images.cluster):
        ensure_verify_image(session, image, images, monitor=monitor, toolchain=toolchain)
    with tempfile.TemporaryDirectory(prefix="slurm-factory-apt-") as scratch:
        _bad_signature_refused(publication, images, Path(scratch), report, session=session)
    node_image = _node_image(plan, publication, images, report, session=session, monitor=monitor, release=installed)
    if node_image is None:
        return
    upgrade = None
    if installed.version != plan.version:
        packages = new.packages
        upgrade = AptUpgrade(
            command=(
                "apt-get",
                "install",
                "-y",
                "--no-install-recommends",
                *ONLY_OUR_SOURCE,
                *KEEP_CONFFILES,
                *(f"{package}={plan.version}" for package in packages),
            ),
            packages=packages,
            version=plan.version,
            installed=installed.version,
        )
    monitor.stage("verify: cluster")
    _cluster(
        plan,
        publication,
        images,
        report,
        session=session,
        node_image=node_image,
        under_test=under_test,
        upgrade=upgrade,
    )


def _apt_container_files(publication: AptPublication, repository: PurePosixPath) -> tuple[bytes, bytes]:
    source = f"deb [signed-by={KEYRING}] file://{repository} {publication.codename} main\n"
    return publication.public_key.read_bytes(), source.encode()


def _trust_repository(container: RunningContainer, publication: AptPublication, repository: PurePosixPath) -> None:
    key, source = _apt_container_files(publication, repository)
    container.put_bytes(KEYRING, key, mode=0o644)
    container.put_bytes(SOURCE_LIST, source, mode=0o644)


def _bad_signature_refused(
    publication: AptPublication,
    images: VerifyImages,
    scratch: Path,
    report: VerificationReport,
    *,
    session: DockerSession,
) -> None:
    tampered = tampered_copy(publication, scratch)
    dist = tampered / "dists" / publication.codename
    with check(report, BAD_SIGNATURE_CHECK) as result:
        host_valid, _ = verify_signature(dist / "Release", dist / "Release.gpg", publication.public_key)
        with session.container(
            images.cluster.reference,
            ["sleep", "infinity"],
            role="verify-apt-tampered",
            mounts=(Mount(tampered, REPOSITORY_MOUNT, read_only=True),),
            network=NO_NETWORK,
        ) as container:
            container.start()
            _trust_repository(container, publication, REPOSITORY_MOUNT)
            code, output = container.run(["apt-get", "update", *ONLY_OUR_SOURCE], environment=APT_ENVIRONMENT)
        refused = code != 0 and any(word in output for word in ("BADSIG", "not signed", "invalid"))
        if host_valid:
            result.fail("the host's signature check accepted a Release changed after signing")
        elif not refused:
            result.fail(
                f"apt-get update accepted a Release changed after signing (exit {code})", output.splitlines()[-8:]
            )
        else:
            line = next((text for text in output.splitlines() if "BADSIG" in text or "not signed" in text), "")
            result.ok(f"InRelease changed after signing: apt-get update refused it (exit {code}: {line.strip()[:160]})")


def _node_image(
    plan: PackagePlan,
    publication: AptPublication,
    images: VerifyImages,
    report: VerificationReport,
    *,
    session: DockerSession,
    monitor: BuildMonitor,
    release: RepositoryRelease,
) -> str | None:
    """The cluster image with `release` installed by apt from the repository (dependencies from the OS's mirror),
    saved as the nodes' image."""
    monitor.stage("verify: apt install")
    reference = f"{session.project_name}/verify-deb-{plan.request.toolchain.name}:{plan.build_id[:16]}"
    with check(report, INSTALL_CHECK) as result:
        with session.container(
            images.cluster.reference,
            ["sleep", "infinity"],
            role="verify-apt-install",
            mounts=(Mount(publication.repository, REPOSITORY_MOUNT, read_only=True),),
        ) as container:
            container.start()
            _trust_repository(container, publication, REPOSITORY_MOUNT)
            steps = (
                ["apt-get", "update"],
                [
                    "apt-get",
                    "install",
                    "-y",
                    "--no-install-recommends",
                    *(f"{package}={release.version}" for package in release.packages),
                ],
            )
            for step in steps:
                code, output = container.run(step, environment=APT_ENVIRONMENT)
                for line in output.splitlines():
                    monitor.output(line)
                if code != 0:
                    result.fail(f"`{' '.join(step[:3])}` failed (exit {code})", output.splitlines()[-12:])
                    return None
            _, policy = container.run(["apt-cache", "policy", "slurm-smd"])
            if f"file:{REPOSITORY_MOUNT} " not in policy:  # apt names a file:// source file:/path
                result.fail("slurm-smd was not installed from the slurm-factory repository", policy.splitlines()[-8:])
                return None
            container.commit(
                reference, session.labels("verify", **{"org.slurm-factory.toolchain": plan.request.toolchain.name})
            )
        result.ok(
            f"{len(release.packages)} packages {release.version} installed by apt-get, trusting only "
            f"{PUBLIC_KEY_FILE} (signed-by); their dependencies from the OS's mirror"
        )
    return reference


def _cluster(
    plan: PackagePlan,
    publication: AptPublication,
    images: VerifyImages,
    report: VerificationReport,
    *,
    session: DockerSession,
    node_image: str,
    under_test: ArtifactUnderTest,
    upgrade: AptUpgrade | None,
) -> None:
    password = secrets.token_hex(16)
    munge_key = os.urandom(1024)
    with ExitStack() as stack:
        network = stack.enter_context(session.network("verify", internal=True))
        database = stack.enter_context(database_container(session, images, network))
        start_database_server(database, password)
        repository = (Mount(publication.repository, REPOSITORY_MOUNT, read_only=True),)
        nodes = stack.enter_context(node_containers(session, node_image, network, mounts=repository))
        for node in nodes.values():
            node.put_files(node_files())
            node.put_bytes(CHECK_DIR / "munge.key", munge_key, mode=0o400)
            node.start()
        cluster = Cluster(database=database, nodes=nodes, artifact=under_test, database_password=password)
        if upgrade is not None:
            for node in nodes.values():  # the repository's index as it is now, from the mount only
                node.run(["apt-get", "update", *ONLY_OUR_SOURCE], environment=APT_ENVIRONMENT)
        check_package_cluster(cluster, report, upgrade=upgrade)
