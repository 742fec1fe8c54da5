"""The package build of `--package deb|all`: the packaging image, the container that compiles and packages, the
stored set, then publishing into the signed apt repository and verifying it by installing from there.

`build()` (builder.py) calls `build_packages` after the tarball (if any) with the same request; a stored set of the
same identity is reused without starting a container, as a tarball is.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slurm_factory.build_lock import image_lock
from slurm_factory.choices import PublishMode
from slurm_factory.config import Settings
from slurm_factory.docker_engine import DockerSession
from slurm_factory.engines import container
from slurm_factory.packages import store
from slurm_factory.packages.apt_repository import AptPublication, publish_packages
from slurm_factory.plan.model import PackagePlan
from slurm_factory.progress import BuildMonitor, Display
from slurm_factory.publish import mirror_directory
from slurm_factory.signing import request_signing_key


@dataclass
class PackageResult:
    """What the package build produced: the stored set, its contract name, where it was published and the
    verification report."""

    plan: PackagePlan
    package_set: store.PackageSet
    link: Path
    reused: bool = False
    log_path: Path | None = None
    publication: AptPublication | None = None
    verification: dict[str, Any] | None = None
    durations: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.plan.kind,
            "build_id": self.plan.build_id,
            "version": self.plan.version,
            "stored": str(self.package_set.directory),
            "link": str(self.link),
            "reused": self.reused,
            "size": self.package_set.size,
            "packages": [entry.to_json() for entry in self.package_set.files],
            "lintian": self.package_set.manifest.get("lintian", {}),
            "log": str(self.log_path) if self.log_path else None,
            "publication": self.publication.to_json() if self.publication else None,
            "verification": self.verification,
            "durations": self.durations,
        }


# What builds the toolchain image the packaging image starts FROM (builder._ensure_toolchain_image, bound to the
# tarball's plan): the same image, so a tarball and packages of one request share its layers and the ccache.
EnsureToolchainImage = Callable[[DockerSession, BuildMonitor], object]


def build_packages(
    plan: PackagePlan,
    settings: Settings,
    *,
    display: Display,
    ensure_toolchain_image: EnsureToolchainImage,
    ensure_source: Callable[[BuildMonitor], None],
) -> PackageResult:
    """The stored set of this identity, or a new one built in a container; then publish and verify as asked."""
    started = time.monotonic()
    request = plan.request
    existing = None if request.no_cache else store.find(plan.artifact_path)
    with ExitStack() as stack:
        # The .deb files are not signed one by one: the key signs the repository, written only with --publish.
        publishes = request.signs and request.publish is not PublishMode.NONE
        signer = stack.enter_context(request_signing_key(request)) if publishes else None
        monitor = stack.enter_context(BuildMonitor(plan.log_path, display))
        session = DockerSession(settings.project_name)
        if existing is None:
            monitor.note(f"package build {plan.build_id}: {plan.artifact_root} for {request.toolchain.name}")
            ensure_source(monitor)
            monitor.stage("image")
            ensure_toolchain_image(session, monitor)
            _ensure_packaging_image(plan, session, monitor)
            package_set = _run_package_build(plan, session, monitor, builds_dir=settings.builds_dir)
        else:
            monitor.note(f"reusing the stored package set {existing.directory}")
            package_set = existing
        link = store.link_contract_name(settings.builds_dir, plan)
        result = PackageResult(plan, package_set, link, reused=existing is not None, log_path=plan.log_path)
        if signer is not None:
            monitor.stage("publish")
            public_key = signer.export_public_key(settings.builds_dir)
            result.publication = publish_packages(
                plan,
                package_set,
                mirror_directory=_mirror_directory(plan, settings),
                signer=signer,
                public_key=public_key,
                session=session,
                monitor=monitor,
            )
        if request.verify:
            from slurm_factory.packages.verify_apt import verify_packages

            assert result.publication is not None  # the request refuses --verify of packages without --publish
            monitor.stage("verify")
            result.verification = verify_packages(
                plan, result.publication, settings=settings, session=session, monitor=monitor
            )
        monitor.close()
        result.durations = {**monitor.durations, "total": round(time.monotonic() - started, 3)}
    return result


def _mirror_directory(plan: PackagePlan, settings: Settings) -> Path:
    """The file:// mirror the repository is written into: `--publish-url`, else the local buildcache directory."""
    url = plan.request.publish_url
    return mirror_directory(url) if url is not None else settings.buildcache_dir


def _ensure_packaging_image(plan: PackagePlan, session: DockerSession, monitor: BuildMonitor) -> None:
    """The toolchain image plus the packaging tools, built unless it is there (its tag is its Dockerfile's hash)."""
    with image_lock(plan.log_path.parent, plan.image.reference, monitor.note):
        if not plan.request.no_cache and session.image_exists(plan.image.reference):
            monitor.note(f"reusing packaging image {plan.image.reference}")
            return
        labels = session.labels("packaging", **{"org.slurm-factory.toolchain": plan.request.toolchain.name})
        session.build_image(
            plan.image.dockerfile, plan.image.reference, labels, monitor.output, nocache=plan.request.no_cache
        )


def _run_package_build(
    plan: PackagePlan, session: DockerSession, monitor: BuildMonitor, *, builds_dir: Path
) -> store.PackageSet:
    with tempfile.TemporaryDirectory(prefix=".scratch-packages-", dir=builds_dir) as scratch:
        output = container.run_build(plan, session, monitor, scratch=Path(scratch))
        monitor.stage("packages")
        package_set = store.write_package_set(plan, output.tree_tar, output.meta, durations=monitor.durations)
    lintian = package_set.manifest.get("lintian", {})
    monitor.note(
        f"{len(package_set.files)} packages ({package_set.size / 1e6:.1f} MB) in {package_set.directory}; lintian: "
        + (", ".join(f"{count} {severity}" for severity, count in sorted(lintian.items())) or "no tags")
    )
    return package_set
