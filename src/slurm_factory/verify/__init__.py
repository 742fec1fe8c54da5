"""Verification: prove an artifact is relocatable, links, and runs jobs — statically, relocated, as a cluster.

`verify_artifact()` is what `build --verify` and `slurm-factory verify TARBALL` run. The report is written beside
the artifact (`<name>.verify.json`) and the sidecar manifest records the outcome; a failure raises
`VerificationError` (exit 1) and leaves the artifact in place, marked unverified.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from slurm_factory.artifact import sidecar, write_text_atomically
from slurm_factory.catalog.upgrades import check_upgrade
from slurm_factory.choices import Arch, host_arch
from slurm_factory.config import Settings
from slurm_factory.docker_engine import DockerSession
from slurm_factory.emulation import require_emulation
from slurm_factory.exceptions import ConfigurationError, DockerError, VerificationError
from slurm_factory.plan.model import ImageSpec
from slurm_factory.progress import BuildMonitor, Display, SilentDisplay
from slurm_factory.signing import verify_signature
from slurm_factory.verify import static
from slurm_factory.verify.artifact_reader import ArtifactUnderTest, ScannedTarball, open_artifact, scan_tarball
from slurm_factory.verify.cluster import running_cluster
from slurm_factory.verify.containers import check_cluster, check_relocated, database_container, start_database_server
from slurm_factory.verify.debug_companion import DebugCompanion, find_debug_companion
from slurm_factory.verify.images import VerifyImages, checked_base_image, emulated, verify_images
from slurm_factory.verify.manifest import ManifestError, parse_manifest
from slurm_factory.verify.report import CheckResult, VerificationReport, check
from slurm_factory.verify.sbom_check import check_sbom

__all__ = ["VerificationReport", "verify_artifact"]

MEMBERS_CHECK = "static: members"
SIGNATURE_CHECK = "signature"
MANIFEST_CHECK = "manifest"
STATIC_CHECKS = (
    "static: machine type",
    "static: RUNPATH",
    "static: vendor libraries",
    "static: build prefix",
    "static: plugins",
    "static: hardening",
    "static: debug symbols",
)
SBOM_CHECK = "sbom"
DOCKER_STAGES = ("images", "relocated", "cluster")


def report_path(artifact: Path) -> Path:
    return sidecar(artifact, ".verify.json")


def _static_checks(artifact: ArtifactUnderTest, companion: DebugCompanion, report: VerificationReport) -> None:
    facts = static.collect_tree_facts(artifact)
    with check(report, "static: machine type") as result:
        static.check_machine_type(artifact, facts, result)
    with check(report, "static: RUNPATH") as result:
        static.check_runpaths(artifact, facts, result)
    with check(report, "static: vendor libraries") as result:
        static.check_no_vendor_libraries(facts, result)
    with check(report, "static: build prefix") as result:
        static.check_no_prefix_in_text(artifact, facts, result)
    with check(report, "static: plugins") as result:
        static.check_expected_plugins(artifact, facts, result)
    with check(report, "static: hardening") as result:
        static.check_hardening(facts, result)
    with check(report, "static: debug symbols") as result:
        if companion.problem is not None:
            result.fail(companion.problem)
        else:
            static.check_debug_symbols(artifact, facts, companion.build_ids, recorder=result)


def ensure_verify_image(
    session: DockerSession, image: ImageSpec, images: VerifyImages, *, monitor: BuildMonitor, toolchain: str
) -> None:
    if session.image_exists(image.reference):
        monitor.note(f"reusing verification image {image.reference}")
        return
    context = images.cluster_context if image is images.cluster else None
    session.build_image(
        image.dockerfile,
        image.reference,
        session.labels("verify", **{"org.slurm-factory.toolchain": toolchain}),
        monitor.output,
        context_files=context,
    )


def _mark_manifest(
    tarball: ScannedTarball, report: VerificationReport, path: Path, *, fallback: dict[str, Any]
) -> None:
    """Record the outcome in the sidecar manifest (the one inside the tarball is immutable)."""
    manifest_path = sidecar(tarball.path, ".manifest.json")
    manifest = dict(fallback)
    if manifest_path.is_file() and not manifest_path.is_symlink():  # never read another file through a planted link
        try:
            loaded = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            loaded = None
        manifest = loaded if isinstance(loaded, dict) else manifest
    manifest["verified"] = {
        "passed": report.passed,
        "at": report.started_at,
        "report": path.name,
        "sha256": tarball.sha256,
    }
    write_text_atomically(manifest_path, json.dumps(manifest, indent=2) + "\n")


def _signature_check(tarball: Path, public_key: Path, report: VerificationReport) -> bool:
    """The detached signature verifies with `public_key` (the report says why not)."""
    signature = sidecar(tarball, ".asc")
    with check(report, SIGNATURE_CHECK) as result:
        if not signature.is_file():
            result.fail(f"no detached signature {signature.name} beside the artifact")
            return False
        valid, detail = verify_signature(tarball, signature, public_key)
        if valid:
            result.ok(detail)
        else:
            result.fail(f"{signature.name} does not verify with {public_key.name}", [detail])
    return not result.failed


def _trusted_shape(tarball: ScannedTarball, report: VerificationReport) -> ArtifactUnderTest | None:
    """The member scan and the manifest as the first two checks; the artifact only when both pass."""
    scan = tarball.scan
    with check(report, MEMBERS_CHECK) as result:
        if scan.safe:
            result.ok(f"{scan.members} members, {scan.total_bytes} bytes, all plain files, directories and symlinks "
                      f"inside {scan.root}/")  # fmt: skip
        else:
            count = len(scan.findings)
            result.fail(f"{count} unsafe member{'' if count == 1 else 's'}: {scan.findings[0]}", scan.shown_findings())
    if not scan.safe:
        report.mark_not_run((MANIFEST_CHECK,), f"the tarball is unsafe (see {MEMBERS_CHECK})")
        return None
    with check(report, MANIFEST_CHECK) as result:
        try:
            artifact = open_artifact(tarball)
        except ManifestError as error:
            result.fail(str(error))
            return None
        result.ok(f"Slurm {artifact.version} for {artifact.toolchain.name}, built by slurm-factory")
    return artifact


def _container_checks(report: VerificationReport, setup_name: str, checks: Callable[[], None]) -> None:
    """Run container checks; a Docker failure while setting them up is a failed check in the report, not a crash
    that leaves no report."""
    started = time.monotonic()
    try:
        checks()
    except DockerError as error:
        seconds = round(time.monotonic() - started, 3)
        report.checks.append(
            CheckResult(
                setup_name,
                passed=False,
                seconds=seconds,
                summary="the check containers could not run",
                evidence=[str(error)],
            )
        )


def _docker_stages(
    artifact: ArtifactUnderTest,
    settings: Settings,
    session: DockerSession | None,
    *,
    monitor: BuildMonitor,
    report: VerificationReport,
    old: ArtifactUnderTest | None = None,
) -> None:
    """Images (the database starts while the others build), the relocated container and the cluster (with `old`,
    upgraded from it); without a Docker engine they are marked not run."""
    try:
        session = session or DockerSession(settings.project_name)
    except DockerError as error:
        report.mark_not_run(DOCKER_STAGES, str(error))
        return
    with ExitStack() as stack:
        monitor.stage("verify: images")
        password = secrets.token_hex(16)
        images: VerifyImages | None = None
        with check(report, "images") as result:
            base_image = checked_base_image(artifact, session.image_exists)
            old_packages = tuple(old.manifest.get("runtime_packages") or []) if old is not None else ()
            images = verify_images(artifact, settings.project_name, base_image, extra_runtime_packages=old_packages)
            ensure_verify_image(session, images.database, images, monitor=monitor, toolchain=artifact.toolchain.name)
            network = stack.enter_context(session.network("verify", internal=True))
            database = stack.enter_context(database_container(session, images, network))
            start_database_server(database, password)
            ensure_verify_image(session, images.runtime, images, monitor=monitor, toolchain=artifact.toolchain.name)
            ensure_verify_image(session, images.cluster, images, monitor=monitor, toolchain=artifact.toolchain.name)
            result.ok(f"{images.runtime.reference}, {images.cluster.reference}, {images.database.reference}"
                      f"{_image_origin(artifact, base_image)}")  # fmt: skip
        if images is None or not report.checks[-1].passed:  # the images do not exist: nothing can run
            return
        built = images
        monitor.stage("verify: relocated")
        _container_checks(report, "relocated: setup", lambda: check_relocated(artifact, session, built, report=report))
        monitor.stage("verify: cluster")

        def cluster_checks() -> None:
            with running_cluster(
                artifact,
                session,
                built,
                database=database,
                network=network,
                database_password=password,
                old_artifact=old,
            ) as cluster:
                check_cluster(cluster, report)

        _container_checks(report, "cluster: setup", cluster_checks)


def _image_origin(artifact: ArtifactUnderTest, base_image: str) -> str:
    if emulated(artifact):
        return f" (from {base_image}, the {artifact.arch} image of {artifact.toolchain.name}, under emulation)"
    if base_image != artifact.base_image:
        return f" (from {base_image}: {artifact.base_image} is unknown)"
    return ""


def upgrade_source(path: Path, toolchain: str, arch: str, *, version: str) -> ArtifactUnderTest:
    """The artifact `--upgrade-from` names, checked before anything runs or builds: a safe slurm-factory artifact of
    the same toolchain and arch, of a release Slurm supports upgrading from to `version` (exit 2 otherwise)."""
    scanned = scan_tarball(path)
    if not scanned.scan.safe:
        raise ConfigurationError(f"--upgrade-from {path.name}: unsafe tarball: {scanned.scan.findings[0]}")
    try:
        old = open_artifact(scanned)
    except ManifestError as error:
        raise ConfigurationError(f"--upgrade-from {path.name}: {error}") from None
    if (old.toolchain.name, old.arch) != (toolchain, arch):
        raise ConfigurationError(
            f"--upgrade-from {path.name} is for {old.toolchain.name} {old.arch}, the new release for {toolchain} "
            f"{arch}: an upgrade keeps the nodes, so both must be for the same OS and arch"
        )
    check_upgrade(old.version, version)
    return old


def _upgrade_source_for(path: Path, new: ScannedTarball) -> ArtifactUnderTest:
    try:
        manifest = parse_manifest(new.scan.manifest or b"")
    except ManifestError as error:
        raise ConfigurationError(f"{new.path.name}: {error}") from None
    toolchain, arch = manifest["toolchain"]["name"], str(manifest.get("arch") or "amd64")
    return upgrade_source(path, toolchain, arch, version=str(manifest["slurm"]["version"]))


def _outcome_error(report: VerificationReport, path: Path, log_path: Path) -> VerificationError:
    """One line: the failed checks and the first one's summary, or why stages did not run."""
    failures = report.failures
    if failures:
        names = ", ".join(failed.name for failed in failures)
        message = f"{report.artifact} failed verification: {names} — {failures[0].summary}"
    else:
        names = ", ".join(stage.name for stage in report.not_run)
        message = f"{report.artifact} is not verified: {names} {report.not_run[0].summary}"
    return VerificationError(
        message, report_path=path, hint=f"evidence in {path}; the build log of the checks is {log_path}"
    )


def _write_report(report: VerificationReport, path: Path, scanned: ScannedTarball, *, manifest: dict[str, Any]) -> None:
    """The report beside the artifact, and the outcome in its sidecar manifest."""
    try:
        report.write(path)
        _mark_manifest(scanned, report, path, fallback=manifest)
    except OSError as error:
        raise ConfigurationError(f"cannot write the verification report beside {path.name}: {error}") from None


def _require_emulation_for_foreign_arch(tarball: ScannedTarball) -> None:
    """The relocated and cluster checks run the artifact's binaries: for another arch than the host's, inside that
    arch's image under qemu emulation, which the host must provide (checked up front, not reported as skipped)."""
    try:
        arch = json.loads(tarball.scan.manifest or b"{}").get("arch", Arch.AMD64.value)
    except (ValueError, AttributeError):
        return  # a malformed manifest is the manifest check's failure
    host = host_arch()
    if arch in set(Arch) and host is not None and arch != host.value:
        require_emulation(Arch(arch), f"verifying {tarball.path.name}, an {arch} artifact, on this {host.value} host")


def verify_artifact(
    tarball: Path,
    settings: Settings | None = None,
    display: Display | None = None,
    *,
    session: DockerSession | None = None,
    public_key: Path | None = None,
    upgrade_from: Path | None = None,
) -> VerificationReport:
    """Run every check on `tarball`; return the report, or raise `VerificationError` carrying its path.

    The tarball is untrusted: its members are scanned and its manifest checked before anything else reads it; an
    unsafe or malformed one fails verification and nothing of it is unpacked or run. `upgrade_from`: an older
    release's artifact; the cluster runs it first and is then upgraded in place to `tarball` (Slurm's supported
    upgrades only, refused before any container starts)."""
    settings = settings or Settings()
    if public_key is not None and not public_key.is_file():
        raise ConfigurationError(f"--public-key {public_key}: no such file")
    scanned = scan_tarball(tarball)
    old = _upgrade_source_for(upgrade_from, scanned) if upgrade_from is not None else None
    _require_emulation_for_foreign_arch(scanned)
    if not os.access(scanned.path.parent, os.W_OK):
        raise ConfigurationError(
            f"{scanned.path.parent} is not writable: verify writes its report beside the artifact",
            hint="copy the artifact into a writable directory",
        )
    report = VerificationReport(scanned.path.name, scanned.sha256)
    try:
        settings.logs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigurationError(f"cannot create the log directory {settings.logs_dir}: {error.strerror}") from None
    log_path = settings.logs_dir / f"verify-{scanned.sha256[:16]}.log"
    artifact = None
    with BuildMonitor(log_path, display or SilentDisplay()) as monitor:
        monitor.stage("verify: static")
        authentic = public_key is None or _signature_check(scanned.path, public_key, report)
        artifact = _trusted_shape(scanned, report)
        if artifact is None:
            report.mark_not_run((*STATIC_CHECKS, SBOM_CHECK, *DOCKER_STAGES), f"see {report.failures[-1].name}")
        else:
            companion = find_debug_companion(artifact)
            artifact = dataclasses.replace(artifact, debug_companion=companion.path)
            _static_checks(artifact, companion, report)
            with check(report, SBOM_CHECK) as result:
                check_sbom(artifact, result)
            if authentic:
                _docker_stages(artifact, settings, session, monitor=monitor, report=report, old=old)
            else:
                # Not the publisher's (or not provably): read, never run.
                report.mark_not_run(DOCKER_STAGES, f"the artifact is not authentic (see {SIGNATURE_CHECK})")
    path = report_path(scanned.path)
    _write_report(report, path, scanned, manifest=artifact.manifest if artifact else {})
    if not report.passed:
        raise _outcome_error(report, path, log_path)
    return report
