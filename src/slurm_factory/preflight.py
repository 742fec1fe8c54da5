"""Preflight: what can be known about a build on the host, checked before any container starts.

Every build runs the local checks first (the home, its caches and a `file://` mirror take files). `--dry-run` also
checks the source's sha256 and that boto3 is there for s3:// mirrors, and ends with a summary of what the build
would do; the signing key's probe signature and the bucket's probe object come first in a real build.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slurm_factory.config import Settings
from slurm_factory.emulation import HANDLERS, require_emulation
from slurm_factory.engines import engine_for
from slurm_factory.exceptions import ConfigurationError, quoted
from slurm_factory.packages.formats import package_summary
from slurm_factory.patches import check_patches_apply
from slurm_factory.plan import BuildPlan, CompilerPlan
from slurm_factory.plan.native import foreign_sources_image
from slurm_factory.plan.spack import compiler_publishes_elsewhere
from slurm_factory.request import (
    BuildRequest,
    CompilerRequest,
    PublishMode,
    file_url_path,
    without_credentials,
)
from slurm_factory.source import check_release_checksum, sha256_of


@dataclass(frozen=True)
class Check:
    """One thing preflight looked at, and what it found (the failures raise instead)."""

    subject: str
    finding: str


@dataclass
class Preflight:
    checks: list[Check] = field(default_factory=list)
    summary: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"checks": [{"subject": c.subject, "finding": c.finding} for c in self.checks], **self.summary}


def _nearest_existing(path: Path) -> Path:
    """`path` or its nearest ancestor that exists, or is a symbolic link (which may point nowhere)."""
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path("/")


def writable_directory(path: Path, subject: str) -> Check:
    """`path` takes files: a directory we can write (a probe file proves it), or one we can create (a probe
    directory in its nearest existing ancestor proves that). Nothing is left behind."""
    try:
        existing = _nearest_existing(path)
    except OSError as error:  # a name too long, a loop of symlinks
        raise ConfigurationError(f"{subject} {quoted(str(path))}: {error.strerror}") from None
    if existing.is_symlink() and not existing.exists():
        raise ConfigurationError(
            f"{subject} {quoted(str(path))}: {existing} is a symbolic link to nothing (dangling, or a loop)"
        )
    if not existing.is_dir():
        raise ConfigurationError(f"{subject} {quoted(str(path))}: {existing} is a file, not a directory")
    try:
        if existing == path:
            descriptor, probe = tempfile.mkstemp(prefix=".slurm-factory-probe-", dir=path)
            os.close(descriptor)
            os.unlink(probe)
            return Check(subject, f"{path} is writable")
        os.rmdir(tempfile.mkdtemp(prefix=".slurm-factory-probe-", dir=existing))
    except OSError as error:
        raise ConfigurationError(
            f"{subject} {quoted(str(path))}: cannot write in {existing}: {error.strerror}",
            hint="choose a directory you can write, or fix its permissions",
        ) from None
    return Check(subject, f"{path} will be created in {existing}")


def local_checks(request: BuildRequest | CompilerRequest, settings: Settings) -> list[Check]:
    """The home and its caches, and a `file://` publish mirror, can take what the build writes."""
    home = writable_directory(settings.home, "SLURM_FACTORY_HOME")
    for directory in settings.cache_dirs():
        writable_directory(directory, f"cache {directory.name}/")
    created = [directory.name for directory in settings.cache_dirs() if not directory.is_dir()]
    checks = [Check("home", f"{home.finding}; caches {'to create: ' + ', '.join(created) if created else 'writable'}")]
    mirror = file_url_path(request.publish_url)
    if mirror is not None:
        checks.append(writable_directory(mirror, "--publish-url"))
    return checks


def _local_source(origin: str) -> Path | None:
    """The request keeps a local source (a path or a file:// URL) as an absolute path, a remote one as its URL."""
    return None if "://" in origin else Path(origin)


def source_check(plan: BuildPlan) -> Check:
    """A local `--slurm-source` must be the release's exact tarball; a cached one is reused; a URL is only
    fetched (and checked) by the real build."""
    request = plan.request
    release = request.slurm
    local = _local_source(request.slurm_source) if request.slurm_source else None
    if local is not None:
        check_release_checksum(release, sha256_of(local), str(local))
        return Check("source", f"{local} matches Slurm {release.version} (sha256 {release.sha256})")
    if plan.source_cache_path.is_file() and sha256_of(plan.source_cache_path) == release.sha256:
        return Check("source", f"cached {plan.source_cache_path} matches (sha256 {release.sha256})")
    origin = without_credentials(request.slurm_source or release.url)
    return Check("source", f"downloaded from {origin} by the build, then checked against sha256 {release.sha256}")


def patch_checks(plan: BuildPlan) -> list[Check]:
    """A site's `--patch` files applied in order to the release's source on this host, when the source is here (a
    local `--slurm-source` or the cache): one that does not apply is refused now (exit 2)."""
    request = plan.request
    site = request.site_patches
    if not site:
        return []
    local = _local_source(request.slurm_source) if request.slurm_source else None
    source = local or (plan.source_cache_path if plan.source_cache_path.is_file() else None)
    if source is None:
        when = "checked on this host right after the build downloads the source, before any image"
        return [Check("patches", f"{len(site)} site patch(es): {when}")]
    why_not = check_patches_apply(source, request.patches, request.slurm.version)
    if why_not:
        return [Check("patches", f"{len(site)} site patch(es) not checked here: {why_not}")]
    names = ", ".join(patch.name for patch in site)
    return [Check("patches", f"{names} apply in order to Slurm {request.slurm.version} (after slurm-factory's own)")]


def arch_summary(request: BuildRequest | CompilerRequest) -> str:
    """The machine the artifact is for, and how this host builds for it."""
    if not request.foreign:
        return request.arch.value
    if request.emulated:
        return f"{request.arch.value}, built under qemu emulation in {request.base_image}"
    return f"{request.arch.value}, cross-compiled on this {request.build_arch.value} host (last steps under qemu)"


def emulation_check(request: BuildRequest | CompilerRequest) -> Check | None:
    """A build for another arch runs that arch's programs (its image's, or a cross build's last steps) under qemu:
    the host must have the binfmt handler, with the F flag, or the build fails after its image is made."""
    if not request.foreign:
        return None
    how = "built under emulation" if request.emulated else "a cross build"
    require_emulation(request.arch, f"--arch {request.arch.value} ({how})")
    handler = HANDLERS[request.arch]
    return Check("emulation", f"this host runs {request.arch.value} binaries in containers ({handler}, flag F)")


def _publish_summary(request: BuildRequest) -> str:
    if request.publish is PublishMode.NONE:
        return "no"
    target = request.publish_url or "the local buildcache"
    return f"{request.publish.value} to {target}"


def _sign_summary(signing_key: str | None) -> str:
    return f"0x{signing_key} (its probe signature runs first in the build)" if signing_key else "no"


def image_summary(plan: BuildPlan | CompilerPlan) -> str:
    """The toolchain image and what it is made from: a ports cross build also copies the arch image's apt sources,
    so that image must be on this host (or pullable) too."""
    sources = foreign_sources_image(plan.request) if isinstance(plan.request, BuildRequest) else None
    copied = f" and the apt sources of {sources} (pull it with --platform linux/{plan.request.arch.value})"
    return f"{plan.image.reference} from {plan.request.base_image}{copied if sources else ''}"


def summary(plan: BuildPlan) -> dict[str, str]:
    """What the build would do, in the words `--dry-run` prints last."""
    request = plan.request
    engine = engine_for(request.engine).describe(request)
    return {
        "release": f"Slurm {request.slurm.version} ({request.slurm.tag})",
        "toolchain": f"{request.toolchain.name} ({request.toolchain.os}){', gpu' if request.gpu else ''}",
        "arch": arch_summary(request),
        "engine": engine,
        "image": image_summary(plan),
        "source": without_credentials(request.slurm_source or request.slurm.url),
        "artifact": str(plan.artifact_path) if request.builds_tarball else f"none (--package {request.package.value})",
        **({"packages": package_summary(request)} if request.builds_packages else {}),
        "verify": "yes" if request.verify else "no",
        "sign": _sign_summary(request.signing_key),
        "publish": _publish_summary(request),
    }


def compiler_summary(plan: CompilerPlan) -> dict[str, str]:
    """What `build-compiler` would do, in the words `--dry-run` prints last."""
    request = plan.request
    return {
        "compiler": f"GCC {request.gcc_version}, built by Spack",
        "toolchain": f"{request.toolchain.name} ({request.toolchain.os})",
        "arch": arch_summary(request),
        "image": image_summary(plan),
        "artifact": str(plan.artifact_path),
        "sign": _sign_summary(request.signing_key),
        "push": "the local buildcache"
        + (f" and {request.publish_url}" if compiler_publishes_elsewhere(request) else ""),
    }
