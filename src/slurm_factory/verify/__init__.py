"""Verification: prove an artifact is relocatable, links, and runs jobs — statically, relocated, as a cluster.

`verify_artifact()` is what `build --verify` and `slurm-factory verify TARBALL` run. The report is written beside
the artifact (`<name>.verify.json`) and the sidecar manifest records the outcome; a failure raises
`VerificationError` (exit 1) and leaves the artifact in place, marked unverified.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from slurm_factory.artifact import sidecar, write_text_atomically
from slurm_factory.config import Settings
from slurm_factory.docker_layer import DockerSession
from slurm_factory.exceptions import ConfigurationError, DockerError, VerificationError
from slurm_factory.plan.model import ImageSpec
from slurm_factory.progress import BuildMonitor, Display, SilentDisplay
from slurm_factory.signing import verify_signature
from slurm_factory.verify import static
from slurm_factory.verify.artifact_reader import ArtifactUnderTest, open_artifact
from slurm_factory.verify.containers import check_cluster, check_relocated
from slurm_factory.verify.images import VerifyImages, verify_images
from slurm_factory.verify.report import CheckResult, VerificationReport, check
from slurm_factory.verify.sbom_check import check_sbom

__all__ = ["VerificationReport", "verify_artifact"]


def report_path(artifact: Path) -> Path:
    return sidecar(artifact, ".verify.json")


def _static_checks(artifact: ArtifactUnderTest, report: VerificationReport) -> None:
    facts = static.collect_tree_facts(artifact)
    with check(report, "static: RUNPATH") as result:
        static.check_runpaths(artifact, facts, result)
    with check(report, "static: vendor libraries") as result:
        static.check_no_vendor_libraries(facts, result)
    with check(report, "static: build prefix") as result:
        static.check_no_prefix_in_text(artifact, facts, result)
    with check(report, "static: plugins") as result:
        static.check_expected_plugins(artifact, facts, result)


def _ensure_image(
    session: DockerSession, image: ImageSpec, images: VerifyImages, monitor: BuildMonitor, toolchain: str
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


def _mark_manifest(artifact: ArtifactUnderTest, report: VerificationReport, path: Path) -> None:
    """Record the outcome in the sidecar manifest (the one inside the tarball is immutable)."""
    manifest_path = sidecar(artifact.path, ".manifest.json")
    manifest = dict(artifact.manifest)
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except ValueError:
            manifest = dict(artifact.manifest)
    manifest["verified"] = {
        "passed": report.passed,
        "at": report.started_at,
        "report": path.name,
        "sha256": artifact.sha256,
    }
    write_text_atomically(manifest_path, json.dumps(manifest, indent=2) + "\n")


def _signature_check(artifact: ArtifactUnderTest, public_key: Path, report: VerificationReport) -> None:
    signature = sidecar(artifact.path, ".asc")
    with check(report, "signature") as result:
        if not signature.is_file():
            result.fail(f"no detached signature {signature.name} beside the artifact")
            return
        valid, detail = verify_signature(artifact.path, signature, public_key)
        if valid:
            result.ok(detail)
        else:
            result.fail(f"{signature.name} does not verify with {public_key.name}", [detail])


def _container_checks(
    report: VerificationReport,
    setup_name: str,
    checks: Callable[[ArtifactUnderTest, DockerSession, VerifyImages, VerificationReport], None],
    artifact: ArtifactUnderTest,
    session: DockerSession,
    images: VerifyImages,
) -> None:
    """Run container checks; a Docker failure while setting them up is a failed check in the report, not a crash
    that leaves no report."""
    started = time.monotonic()
    try:
        checks(artifact, session, images, report)
    except DockerError as error:
        seconds = round(time.monotonic() - started, 3)
        report.checks.append(
            CheckResult(setup_name, False, seconds, "the check containers could not run", [str(error)])
        )


def verify_artifact(
    tarball: Path,
    settings: Settings | None = None,
    display: Display | None = None,
    session: DockerSession | None = None,
    public_key: Path | None = None,
) -> VerificationReport:
    """Run every check on `tarball`; return the report, or raise `VerificationError` carrying its path."""
    settings = settings or Settings()
    if public_key is not None and not public_key.is_file():
        raise ConfigurationError(f"--public-key {public_key}: no such file")
    artifact = open_artifact(tarball)
    report = VerificationReport(artifact.path.name, artifact.sha256)
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.logs_dir / f"verify-{artifact.sha256[:16]}.log"
    with BuildMonitor(log_path, display or SilentDisplay()) as monitor:
        monitor.stage("verify: static")
        if public_key is not None:
            _signature_check(artifact, public_key, report)
        _static_checks(artifact, report)
        with check(report, "sbom") as result:
            check_sbom(artifact, result)
        session = session or DockerSession(settings.project_name)
        images = verify_images(artifact, settings.project_name)
        monitor.stage("verify: images")
        with check(report, "images") as result:
            _ensure_image(session, images.runtime, images, monitor, artifact.toolchain.name)
            _ensure_image(session, images.cluster, images, monitor, artifact.toolchain.name)
            result.ok(f"{images.runtime.reference}, {images.cluster.reference}")
        if report.checks[-1].passed:  # the images exist: the container checks can run
            monitor.stage("verify: relocated")
            _container_checks(report, "relocated: setup", check_relocated, artifact, session, images)
            monitor.stage("verify: cluster")
            _container_checks(report, "cluster: setup", check_cluster, artifact, session, images)
    path = report_path(artifact.path)
    report.write(path)
    _mark_manifest(artifact, report, path)
    if not report.passed:
        failed = ", ".join(check.name for check in report.failures)
        raise VerificationError(
            f"{artifact.path.name} failed verification: {failed}",
            report_path=path,
            hint=f"evidence in {path}; the build log of the checks is {log_path}",
        )
    return report
