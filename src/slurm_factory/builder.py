"""The Python API: `build()` and `build_compiler()`. The CLI is a thin layer over these.

A build is a sequence of small named steps: validate → plan → (plan-dir / dry-run) → source → image → compile →
artifact. Everything that can be refused is refused before Docker is touched.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import socket
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Unpack

from slurm_factory import base_images, store
from slurm_factory.artifact import (
    Artifact,
    build_compiler_manifest,
    build_manifest,
    debug_companion,
    sidecar,
    write_artifact,
)
from slurm_factory.build_lock import image_lock, request_lock
from slurm_factory.buildcache import cached_gcc
from slurm_factory.catalog.spack_pins import load_spack_pins
from slurm_factory.choices import Arch
from slurm_factory.config import Settings
from slurm_factory.docker_engine import DockerSession
from slurm_factory.engines import container, engine_for
from slurm_factory.engines.container import SecretHandout
from slurm_factory.exceptions import BuildError, ConfigurationError, DockerError, VerificationError, quoted
from slurm_factory.options import BuildOptions, CompilerOptions
from slurm_factory.packages.build import PackageResult, build_packages
from slurm_factory.packages.formats import make_package_plan
from slurm_factory.patches import check_patches_apply
from slurm_factory.plan import (
    BuildPlan,
    CompilerPlan,
    make_compiler_plan,
    make_plan,
    request_context_files,
    write_context_files,
)
from slurm_factory.plan.model import PackagePlan, PlanFile
from slurm_factory.plan.spack import compiler_publishes_elsewhere
from slurm_factory.preflight import (
    Check,
    Preflight,
    compiler_summary,
    emulation_check,
    local_checks,
    patch_checks,
    source_check,
    summary,
)
from slurm_factory.progress import BuildMonitor, Display, SilentDisplay
from slurm_factory.publish import publish_artifact
from slurm_factory.request import (
    BuildRequest,
    CompilerRequest,
    Engine,
    make_compiler_request,
    make_request,
    require_buildable_packages,
)
from slurm_factory.s3 import S3Access, S3Url, is_s3_url, require_boto3
from slurm_factory.sbom import SBOM_SUFFIX, sbom_path, write_sbom
from slurm_factory.signing import SigningKey, request_signing_key, user_keyring_home, verify_signature
from slurm_factory.source import ensure_source, needs_download
from slurm_factory.verify import report_path, upgrade_source, verify_artifact


@dataclass
class CompilerResult:
    """What `build_compiler()` produced (for `dry_run`, only the plan)."""

    plan: CompilerPlan
    artifact: Path | None = None
    sha256: str | None = None
    size: int | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    log_path: Path | None = None
    plan_dir: Path | None = None
    preflight: Preflight | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "build_id": self.plan.build_id,
            "artifact": str(self.artifact) if self.artifact else None,
            "sha256": self.sha256,
            "size": self.size,
            "manifest": self.manifest,
            "durations": self.durations,
            "log": str(self.log_path) if self.log_path else None,
            "plan_dir": str(self.plan_dir) if self.plan_dir else None,
            "preflight": self.preflight.to_json() if self.preflight else None,
            "dry_run": self.artifact is None,
        }


@dataclass
class BuildResult:
    """What a build produced. For `dry_run`, only `plan` (and `plan_dir` when asked) are set."""

    plan: BuildPlan
    artifact: Path | None = None
    sha256: str | None = None
    size: int | None = None
    signature: Path | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    verification: dict[str, Any] | None = None
    log_path: Path | None = None
    plan_dir: Path | None = None
    public_key: Path | None = None
    publication: dict[str, Any] | None = None
    reused: bool = False
    stored: Path | None = None
    sbom: Path | None = None
    debug_symbols: Path | None = None
    preflight: Preflight | None = None
    # `--package deb|all`: the native package set (its own build id, store, repository and report).
    packages: PackageResult | None = None
    package_plan: PackagePlan | None = None
    dry_run: bool = False

    @property
    def build_id(self) -> str:
        return self.plan.build_id

    def to_json(self) -> dict[str, Any]:
        return {
            "build_id": self.build_id,
            "artifact": str(self.artifact) if self.artifact else None,
            "sha256": self.sha256,
            "size": self.size,
            "reused": self.reused,
            "stored": str(self.stored) if self.stored else None,
            "sbom": str(self.sbom) if self.sbom else None,
            "debug_symbols": str(self.debug_symbols) if self.debug_symbols else None,
            "signature": str(self.signature) if self.signature else None,
            "public_key": str(self.public_key) if self.public_key else None,
            "publication": self.publication,
            "manifest": self.manifest,
            "durations": self.durations,
            "verification": self.verification,
            "log": str(self.log_path) if self.log_path else None,
            "plan_dir": str(self.plan_dir) if self.plan_dir else None,
            "preflight": self.preflight.to_json() if self.preflight else None,
            "packages": self.packages.to_json() if self.packages else None,
            "package_build_id": self.package_plan.build_id if self.package_plan else None,
            "dry_run": self.dry_run,
        }


def build(
    *,
    settings: Settings | None = None,
    dry_run: bool = False,
    plan_dir: str | os.PathLike[str] | None = None,
    display: Display | None = None,
    **options: Unpack[BuildOptions],
) -> BuildResult:
    """Build one Slurm release for one toolchain; return the artifact (or, with `dry_run`, only the plan).

    `options` are `slurm_factory.options.BuildOptions` (the same as `build-slurm`'s options, by keyword)."""
    settings = _checked_run_arguments(settings, dry_run, plan_dir)
    request = make_request(home=settings.home, **options)
    if not dry_run:
        require_buildable_packages(request)
    plan = make_plan(request, settings)
    package_plan = make_package_plan(request, settings) if request.builds_packages else None
    result = BuildResult(plan=plan, package_plan=package_plan, dry_run=dry_run)
    result.plan_dir = _written_plan_dir(request_context_files(plan, package_plan), plan_dir)
    checks = local_checks(request, settings)
    _require_cached_compiler(request, settings)
    if request.upgrade_from is not None:
        old = upgrade_source(Path(request.upgrade_from), request.toolchain.name, request.arch.value,
                             version=request.slurm.version)  # fmt: skip
        checks.append(Check("upgrade", f"{Path(request.upgrade_from).name} (Slurm {old.version}) to "
                                       f"{request.slurm.version} is an upgrade Slurm supports"))  # fmt: skip
    if dry_run:
        result.preflight = _preflight(plan, checks, settings)
        return result
    emulation_check(request)
    settings.ensure_dirs()
    display = display or SilentDisplay()
    with request_lock(settings.logs_dir, plan.build_id, display.stage):
        if request.builds_tarball:
            result = _execute(plan, settings, display, result=result)
        if package_plan is not None:
            result.packages = _build_packages(package_plan, plan, settings, display=display)
        return result


def _build_packages(
    package_plan: PackagePlan, plan: BuildPlan, settings: Settings, *, display: Display
) -> PackageResult:
    """The native packages of the request, from the tarball's source and toolchain image."""
    request = plan.request

    def ensure_image(session: DockerSession, monitor: BuildMonitor) -> object:
        return _ensure_toolchain_image(plan, session, monitor, home=settings.home)

    def ensure_plan_source(monitor: BuildMonitor) -> None:
        monitor.stage("source")
        ensure_source(request.slurm, plan.source_cache_path, request.slurm_source)
        why_unchecked = check_patches_apply(plan.source_cache_path, request.patches, request.slurm.version)
        if why_unchecked:
            monitor.note(f"patches not checked on the host: {why_unchecked}")

    return build_packages(
        package_plan, settings, display=display, ensure_toolchain_image=ensure_image, ensure_source=ensure_plan_source
    )


def _preflight(plan: BuildPlan, checks: list[Check], settings: Settings) -> Preflight:
    """`--dry-run`: what can be checked without contacting anything but this host's Docker engine — the source's
    sha256, the patches, the base image against its pin, that this host runs a foreign arch's programs, boto3 for
    s3:// — then what the build would do. The signing key and the bucket are probed when a real build starts."""
    request = plan.request
    s3_urls = (request.publish_url, request.buildcache_url)
    found = [source_check(plan), *patch_checks(plan), _base_image_check(plan, settings)]
    found += _host_checks(request, s3_urls, request.signing_key if request.signs else None)
    return Preflight([*checks, *found], summary(plan))


def _base_image_check(plan: BuildPlan, settings: Settings) -> Check:
    """The base image's local id against its pin (base_images.py); nothing is pulled or started."""
    base = plan.request.base_image
    pinned = base_images.load_pins(settings.home).get(base)
    try:
        session = DockerSession(settings.project_name, timeout=10)
        current = session.image_id(base)
        built_from = session.image_labels(plan.image.reference).get(base_images.BASE_IMAGE_ID_LABEL)
    except DockerError:
        record = "not recorded"
        if pinned is not None:
            record = f"recorded as {base_images.short_id(pinned.image_id)} on {pinned.pinned_on}"
        return Check("base image", f"{base}: {record}; not compared, the Docker engine is not reachable")
    finding = base_images.describe(base, pinned, current)
    if built_from is not None:
        finding += "; " + base_images.toolchain_image_note(built_from, current)
    return Check("base image", finding)


def _compiler_preflight(plan: CompilerPlan, checks: list[Check]) -> Preflight:
    """`build-compiler --dry-run`: the same host checks as a build's, then what the build would do."""
    request = plan.request
    s3_urls = (request.publish_url if compiler_publishes_elsewhere(request) else None,)
    return Preflight([*checks, *_host_checks(request, s3_urls, request.signing_key)], compiler_summary(plan))


def _host_checks(
    request: BuildRequest | CompilerRequest, s3_urls: tuple[str | None, ...], signing_key: str | None
) -> list[Check]:
    """This host runs the arch's programs (a foreign build), has boto3 (an s3:// mirror), and where the signing key
    is looked up (no private key given)."""
    checks = [check for check in (emulation_check(request),) if check is not None]
    if any(is_s3_url(url) for url in s3_urls):
        checks.append(Check("s3", f"boto3 {require_boto3()} is installed"))
    if signing_key is not None and request.gpg_private_key is None:
        keyring = user_keyring_home() or "~/.gnupg"
        checks.append(Check("signing key", f"0x{signing_key} is looked up in {keyring} when the build starts"))
    return checks


def _checked_run_arguments(settings: object, dry_run: object, plan_dir: object) -> Settings:
    """The Python API's own arguments (the request's are checked by `make_request`): a `Settings`, a bool, a path."""
    if settings is not None and not isinstance(settings, Settings):
        raise ConfigurationError(f"settings must be a slurm_factory.config.Settings, not {type(settings).__name__}")
    if not isinstance(dry_run, bool):
        raise ConfigurationError(f"dry_run={quoted(dry_run)}: expected True or False, not {type(dry_run).__name__}")
    if plan_dir is not None and not isinstance(plan_dir, str | os.PathLike):
        raise ConfigurationError(f"plan_dir={quoted(plan_dir)}: expected a path, not {type(plan_dir).__name__}")
    if isinstance(plan_dir, str) and not plan_dir.strip():
        raise ConfigurationError("--plan-dir is empty: name the directory to write the build context into")
    return settings or Settings()


def _written_plan_dir(files: dict[str, PlanFile], plan_dir: str | os.PathLike[str] | None) -> Path | None:
    """`--plan-dir`: the rendered build context, written before anything is checked or run."""
    if plan_dir is None:
        return None
    write_context_files(files, Path(plan_dir))
    return Path(plan_dir)


def _require_cached_compiler(request: BuildRequest, settings: Settings) -> None:
    """`--compiler-version X` from the local mirror: the GCC must be there, or hours of building end in a failure."""
    if request.compiler_version is None or request.buildcache_url is not None:
        return  # remote mirrors are only read inside the container
    if cached_gcc(settings.buildcache_dir, request.compiler_version, request.arch):
        return
    target = load_spack_pins().target(request.arch.value)
    arch = "" if request.arch is Arch.AMD64 else f" --arch {request.arch.value}"
    raise ConfigurationError(
        f"--compiler-version {request.compiler_version}: GCC {request.compiler_version} for {target} is not in the "
        f"local buildcache {settings.buildcache_dir}",
        hint=f"make it with `slurm-factory build-compiler --compiler-version {request.compiler_version} "
        f"--toolchain {request.toolchain.name}{arch}`",
    )


def _reusable(request: BuildRequest) -> bool:
    """`--no-cache` always builds; a Spack push to a buildcache needs the install tree inside the build container."""
    return not request.no_cache and not engine_for(request.engine).publishes_in_container(request)


def _execute(plan: BuildPlan, settings: Settings, display: Display, *, result: BuildResult) -> BuildResult:
    stored = store.stored_path(settings.builds_dir, plan)
    existing = store.find(stored) if _reusable(plan.request) else None
    if existing is not None:
        return _reuse(plan, existing, settings, display=display, result=result)
    return _build(plan, stored, settings, display=display, result=result)


def _reuse(
    plan: BuildPlan, artifact: Artifact, settings: Settings, *, display: Display, result: BuildResult
) -> BuildResult:
    """The artifact of this identity is stored: no container starts. Only a missing report or signature is added."""
    started = time.monotonic()
    request = plan.request
    result.reused = True
    result.log_path = plan.log_path if plan.log_path.is_file() else None  # the log of the build that made it
    _fill_result(result, artifact, {}, total=0.0)
    if not sbom_path(artifact.path).is_file():  # stored before SBOMs existed
        write_sbom(artifact)
    _link(result, settings)
    with ExitStack() as stack:
        s3 = _s3_access(
            stack, request.s3_endpoint_url, request.publish_url, read_url=request.buildcache_url, engine=request.engine
        )
        signer = stack.enter_context(request_signing_key(request)) if request.signs else None
        try:
            # A stored report does not cover an upgrade: with --upgrade-from, verification runs again.
            if request.verify and (request.upgrade_from is not None or not _verified(artifact)):
                _verify(result, artifact, settings, display=display, session=DockerSession(settings.project_name))
            elif request.verify:
                result.verification = _load_report(report_path(artifact.path))
            if signer is not None:
                _sign_and_publish(result, artifact, signer, settings=settings, s3=s3)
        finally:
            _link(result, settings)
    result.durations["reuse"] = round(time.monotonic() - started, 3)
    result.durations["total"] = round(time.monotonic() - started, 3)
    return result


def _verified(artifact: Artifact) -> bool:
    """A passed report of exactly these bytes sits beside the artifact."""
    report = _load_report(report_path(artifact.path))
    return bool(report and report.get("passed") and report.get("sha256") == artifact.sha256)


def _link(result: BuildResult, settings: Settings) -> None:
    """The contract's names point at the stored artifact and whatever sidecars it has now."""
    assert result.stored is not None
    link = store.link_contract_names(settings.builds_dir, result.stored)
    result.artifact = link
    result.sbom = sidecar(link, SBOM_SUFFIX) if sbom_path(result.stored).is_file() else None
    companion = debug_companion(link)
    result.debug_symbols = companion if debug_companion(result.stored).is_file() else None
    result.signature = sidecar(link, ".asc") if sidecar(result.stored, ".asc").is_file() else None


def _build(plan: BuildPlan, stored: Path, settings: Settings, *, display: Display, result: BuildResult) -> BuildResult:
    started = time.monotonic()
    built_at = dt.datetime.now(dt.UTC)
    request = plan.request
    result.log_path = plan.log_path
    with ExitStack() as stack:
        monitor = stack.enter_context(BuildMonitor(plan.log_path, display))
        monitor.note(f"build {plan.build_id}: Slurm {request.slurm.version} for {request.toolchain.name}")
        # Buckets and keys are checked first: cheap, and nothing long may start with a publish that will fail.
        s3 = _s3_access(
            stack, request.s3_endpoint_url, request.publish_url, read_url=request.buildcache_url, engine=request.engine
        )
        signer = stack.enter_context(request_signing_key(request)) if request.signs else None
        # A local source is checked before Docker is asked; a download waits until the engine has answered.
        downloads = needs_download(request.slurm, plan.source_cache_path, request.slurm_source)
        session = _docker_session(settings, monitor) if downloads else None
        monitor.stage("source")
        ensure_source(request.slurm, plan.source_cache_path, request.slurm_source)
        why_unchecked = check_patches_apply(plan.source_cache_path, request.patches, request.slurm.version)
        if why_unchecked:
            monitor.note(f"patches not checked on the host: {why_unchecked}")
        session = session or _docker_session(settings, monitor)
        monitor.stage("image")
        base_image_id = _ensure_toolchain_image(plan, session, monitor, home=settings.home)
        plan = _with_toolchain_image_id(plan, session)
        with _scratch_directory(settings.builds_dir) as scratch:
            handout = _build_handout(request, signer, s3) if engine_for(request.engine).runs_spack else None
            output = container.run_build(plan, session, monitor, scratch=Path(scratch), handout=handout)
            monitor.stage("artifact")
            manifest = build_manifest(plan, output.meta, base_image_id=base_image_id)
            artifact = write_artifact(plan, output.tree_tar, manifest, destination=stored)
            write_sbom(artifact)
        monitor.note(f"artifact {artifact.path} sha256 {artifact.sha256}")
        _raise_publish_failure(output, artifact)
        monitor.close()
        _fill_result(result, artifact, monitor.durations, total=time.monotonic() - started)
        store.write_build_record(stored, plan, result.durations, built_at=built_at)
        _link(result, settings)
        try:
            if request.verify:
                _verify(result, artifact, settings, display=display, session=session)
            if signer is not None:
                _sign_and_publish(result, artifact, signer, settings=settings, s3=s3)
        finally:  # a failed verification's report is linked too
            store.write_build_record(stored, plan, result.durations, built_at=built_at)
            _link(result, settings)
    return result


SCRATCH_PREFIX = ".scratch-"


def _scratch_directory(builds_dir: Path) -> tempfile.TemporaryDirectory[str]:
    """Where an engine's tree lands before the artifact is written: `.scratch-<pid>@<host>-…` in builds/, removed
    when the block ends. One left by a process of this host that was killed outright (SIGKILL) is removed first."""
    host = socket.gethostname()
    for stale in builds_dir.glob(f"{SCRATCH_PREFIX}*@{host}-*"):  # only this host's processes can be checked
        pid = stale.name.removeprefix(SCRATCH_PREFIX).partition("@")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(stale, ignore_errors=True)
    return tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}@{host}-", dir=builds_dir)


def _docker_session(settings: Settings, monitor: BuildMonitor) -> DockerSession:
    """The engine, with what a killed run of this project left behind removed first."""
    session = DockerSession(settings.project_name)
    for name in session.remove_orphaned_containers():
        monitor.note(f"removed container {name}, left by a slurm-factory process that is gone")
    return session


def _s3_access(
    stack: ExitStack,
    endpoint: str | None,
    publish_url: str | None,
    *,
    read_url: str | None = None,
    engine: Engine = Engine.SPACK,
) -> S3Access | None:
    """Host-side S3 access when a mirror is s3://: a publish needs credentials the bucket accepts (checked now,
    before any container starts; a Spack push also lists the mirror to update its index); a read may be anonymous
    (public buildcaches)."""
    if not is_s3_url(publish_url) and not is_s3_url(read_url):
        return None
    publishes = is_s3_url(publish_url)
    purpose = "--publish-url" if publishes else "--buildcache-url"
    access = stack.enter_context(S3Access(endpoint, required=publishes, purpose=purpose))
    if publishes and publish_url is not None:
        access.probe(S3Url.parse(publish_url), lists=engine_for(engine).runs_spack)
    return access


def _raise_publish_failure(output: container.EngineOutput, artifact: Artifact) -> None:
    """A push that failed after the build: the artifact is kept, the failure still ends the run (exit 1)."""
    error = output.publish_error
    if error is None:
        return
    raise BuildError(
        error.message,
        log_path=error.log_path,
        tail=error.tail,
        hint=f"the artifact was kept: {artifact.path}; fix the mirror and build again (the buildcache is reused "
        "with --buildcache all)",
    )


def _credential_files(access: S3Access | None, url: str | None) -> dict[str, bytes]:
    return access.credential_files() if access is not None and is_s3_url(url) else {}


def _push_secrets(signer: SigningKey | None, s3: S3Access | None, publish_url: str | None) -> dict[str, bytes]:
    """What a signed buildcache push inside a container needs: the key (and passphrase), credentials to write."""
    key = signer.secret_files() if signer is not None else {}
    return {**key, **_credential_files(s3, publish_url)}


def _build_handout(request: BuildRequest, signer: SigningKey | None, s3: S3Access | None) -> SecretHandout:
    """The Spack engine reads an s3:// buildcache during the build (with credentials only if it is not public) and
    signs its push inside the container."""
    read_url = request.buildcache_url
    public = s3 is None or not is_s3_url(read_url) or s3.reads_anonymously(S3Url.parse(str(read_url)))
    return SecretHandout(
        build=(lambda: {}) if public else (lambda: _credential_files(s3, read_url)),
        publish=lambda: _push_secrets(signer, s3, request.publish_url),
    )


def _with_toolchain_image_id(plan: BuildPlan, session: DockerSession) -> BuildPlan:
    """The build container is told the id of the toolchain image it runs in (a Spack concretization is stored
    under it: a rebuilt image, with other builtin packages or another OS state, solves again)."""
    image_id = session.image_id(plan.image.reference)
    if image_id is None:
        return plan
    environment = {**plan.container.environment, "SLURM_FACTORY_TOOLCHAIN_IMAGE_ID": image_id}
    return dataclasses.replace(plan, container=dataclasses.replace(plan.container, environment=environment))


def _ensure_toolchain_image(
    plan: BuildPlan | CompilerPlan, session: DockerSession, monitor: BuildMonitor, *, home: Path
) -> str | None:
    """The toolchain image, built unless it is there; returns the id of the base image it was built from."""
    with image_lock(plan.log_path.parent, plan.image.reference, monitor.note):
        return _build_toolchain_image(plan, session, monitor, home=home)


def _build_toolchain_image(
    plan: BuildPlan | CompilerPlan, session: DockerSession, monitor: BuildMonitor, *, home: Path
) -> str | None:
    request = plan.request
    base = request.base_image
    pinned = base_images.load_pins(home).get(base)
    current = session.image_id(base)
    if not request.no_cache and session.image_exists(plan.image.reference):
        built_from = session.image_labels(plan.image.reference).get(base_images.BASE_IMAGE_ID_LABEL)
        monitor.note(f"reusing toolchain image {plan.image.reference}")
        if built_from is not None and current is not None and built_from != current:
            monitor.note(
                f"base image {base} now names {base_images.short_id(current)}; this toolchain image was built "
                f"from {base_images.short_id(built_from)}, and stays so until --no-cache or `clean --full`"
            )
        return built_from
    if current is None:  # pulled now, so that the toolchain image can carry its id
        monitor.note(f"pulling base image {base}")
        current = session.pull_image(base)
    monitor.note(f"base image {base_images.describe(base, pinned, current, building=True)}")
    labels = session.labels("toolchain", **{"org.slurm-factory.toolchain": request.toolchain.name})
    labels[base_images.BASE_IMAGE_ID_LABEL] = current
    session.build_image(
        plan.image.dockerfile,
        plan.image.reference,
        labels,
        monitor.output,
        nocache=request.no_cache,
        context_files={PurePosixPath(name): plan_file for name, plan_file in plan.image.context_files.items()},
        context_paths=plan.image.context_paths,
    )
    moved = base_images.pin(home, base, current, lock_dir=plan.log_path.parent)
    if moved is not None:
        monitor.note(f"base image {base} recorded anew as {base_images.short_id(current)} "
                     f"(was {base_images.short_id(moved.image_id)}, recorded on {moved.pinned_on})")  # fmt: skip
    return current


def _sign_and_publish(
    result: BuildResult, artifact: Artifact, signer: SigningKey, *, settings: Settings, s3: S3Access | None
) -> None:
    """Sign the tarball (`.asc`) and export the public key beside it; publish when asked."""
    started = time.monotonic()
    result.public_key = signer.export_public_key(settings.builds_dir)
    result.signature = _signature(artifact.path, signer, result.public_key)
    sbom = sbom_path(artifact.path)  # every build and every reuse wrote it
    sbom_signature = _signature(sbom, signer, result.public_key)
    companion = debug_companion(artifact.path)
    companion_files: tuple[Path, ...] = ()
    if companion.is_file():
        companion_files = (companion, sidecar(companion, ".sha256"), _signature(companion, signer, result.public_key))
    request = result.plan.request
    # The native engine publishes its tarball for `slurm` and `all`; the Spack engine pushed packages to the
    # buildcache inside the container and adds the tarball only for `all` (docs/signing-publishing.md).
    if engine_for(request.engine).publishes_tarball(request.publish):
        published = Artifact(artifact.path, artifact.sha256, artifact.size, result.manifest)
        publication = publish_artifact(
            published,
            result.signature,
            result.public_key,
            publish_url=request.publish_url or settings.buildcache_dir.as_uri(),
            s3=s3,
            companions=(sbom, sbom_signature, *companion_files),
        )
        result.publication = publication.to_json()
    result.durations["sign+publish"] = round(time.monotonic() - started, 3)
    result.durations.setdefault("total", 0.0)
    result.durations["total"] = round(result.durations["total"] + result.durations["sign+publish"], 3)


def _signature(path: Path, signer: SigningKey, public_key: Path) -> Path:
    """The `.asc` beside `path`: kept when it verifies with this key (a reused artifact keeps its signature),
    made otherwise."""
    existing = sidecar(path, ".asc")
    if existing.is_file() and verify_signature(path, existing, public_key)[0]:
        return existing
    return signer.sign_detached(path)


def _verify(
    result: BuildResult, artifact: Artifact, settings: Settings, *, display: Display, session: DockerSession
) -> None:
    """Verify the fresh artifact; the report lands in the result even when verification fails."""
    started = time.monotonic()
    try:
        upgrade_from = Path(result.plan.request.upgrade_from) if result.plan.request.upgrade_from else None
        report = verify_artifact(artifact.path, settings, display=display, session=session, upgrade_from=upgrade_from)
    except VerificationError as error:
        result.verification = _load_report(error.report_path)
        raise
    finally:
        result.durations["verify"] = round(time.monotonic() - started, 3)
        result.durations["total"] = round(result.durations.get("total", 0.0) + result.durations["verify"], 3)
    result.verification = report.to_json()
    result.manifest = json.loads(artifact.manifest_path.read_text(encoding="utf-8"))


def _load_report(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    loaded = json.loads(path.read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else None


def _fill_result(result: BuildResult, artifact: Artifact, durations: dict[str, float], *, total: float) -> None:
    result.artifact = artifact.path
    result.stored = artifact.path
    result.sha256 = artifact.sha256
    result.size = artifact.size
    result.manifest = artifact.manifest
    result.durations = {**durations, "total": round(total, 3)}


def build_compiler(
    *,
    settings: Settings | None = None,
    dry_run: bool = False,
    plan_dir: str | os.PathLike[str] | None = None,
    display: Display | None = None,
    **options: Unpack[CompilerOptions],
) -> CompilerResult:
    """Build a GCC with Spack in the toolchain's container, push it to the binary mirror (the local one by default)
    and write `builds/gcc-<version>-<toolchain>-compiler.tar.gz` with a modulefile.

    `options` are `slurm_factory.options.CompilerOptions` (`build-compiler`'s options, by keyword)."""
    settings = _checked_run_arguments(settings, dry_run, plan_dir)
    request = make_compiler_request(**options)
    plan = make_compiler_plan(request, settings)
    result = CompilerResult(plan=plan)
    result.plan_dir = _written_plan_dir(plan.context_files(), plan_dir)
    checks = local_checks(request, settings)
    if dry_run:
        result.preflight = _compiler_preflight(plan, checks)  # its host checks look up the keyring
        return result
    if request.signing_key is not None and request.gpg_private_key is None:
        user_keyring_home()
    emulation_check(request)
    settings.ensure_dirs()
    started = time.monotonic()
    result.log_path = plan.log_path
    display = display or SilentDisplay()
    with ExitStack() as stack:
        stack.enter_context(request_lock(settings.logs_dir, plan.build_id, display.stage))
        monitor = stack.enter_context(BuildMonitor(plan.log_path, display))
        monitor.note(f"build-compiler {plan.build_id}: GCC {request.gcc_version} for {request.toolchain.name}")
        elsewhere = compiler_publishes_elsewhere(request)
        s3 = _s3_access(stack, request.s3_endpoint_url, request.publish_url if elsewhere else None)
        signer = None
        if request.signing_key is not None:  # checked (probe signature) before any container starts
            key = request_signing_key(request)
            signer = stack.enter_context(key)
        session = _docker_session(settings, monitor)
        monitor.stage("image")
        _ensure_toolchain_image(plan, session, monitor, home=settings.home)
        with _scratch_directory(settings.builds_dir) as scratch:
            handout = SecretHandout(publish=lambda: _push_secrets(signer, s3, request.publish_url))
            output = container.run_build(plan, session, monitor, scratch=Path(scratch), handout=handout)
            monitor.stage("artifact")
            artifact = write_artifact(plan, output.tree_tar, build_compiler_manifest(plan, output.meta))
        monitor.close()
        _raise_publish_failure(output, artifact)
    result.artifact, result.sha256, result.size = artifact.path, artifact.sha256, artifact.size
    result.manifest = artifact.manifest
    result.durations = {**monitor.durations, "total": round(time.monotonic() - started, 3)}
    return result
