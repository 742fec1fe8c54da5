"""Plan rendering: pure functions from a `BuildRequest` (+ settings) to a `BuildPlan`. No Docker, no I/O beyond
reading the package's templates."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from slurm_factory import __version__, s3
from slurm_factory.catalog import Toolchain
from slurm_factory.config import Settings
from slurm_factory.engines import engine_for
from slurm_factory.exceptions import ConfigurationError
from slurm_factory.packages.versions import DEFAULT_RELEASE
from slurm_factory.plan import layout, spack
from slurm_factory.plan.artifact_files import render_compiler_artifact_files
from slurm_factory.plan.image_inputs import ImageInputs, image_inputs
from slurm_factory.plan.model import BuildPlan, CompilerPlan, ContainerSpec, ImageSpec, Mount, PackagePlan, PlanFile
from slurm_factory.request import BuildRequest, CompilerRequest, PackageKind, PublishMode, file_url_path

__all__ = [
    "BuildPlan",
    "CompilerPlan",
    "ContainerSpec",
    "ImageSpec",
    "Mount",
    "PackagePlan",
    "PlanFile",
    "make_compiler_plan",
    "make_plan",
    "request_context_files",
    "write_context_files",
    "write_plan_dir",
]


def _digest(*parts: str) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode())
        hasher.update(b"\0")
    return hasher.hexdigest()


def image_spec(
    toolchain: str,
    engine: str,
    dockerfile: str,
    *,
    project_name: str,
    context: tuple[dict[str, Path], str] = ({}, ""),
    context_files: dict[str, PlanFile] | None = None,
) -> ImageSpec:
    """Tagged by the hash of the Dockerfile (and of what the context adds): an unchanged toolchain is reused, a
    changed one gets a new image."""
    context_paths, context_identity = context
    files = context_files or {}
    rendered = [f"{name}\0{plan_file.mode}\0{plan_file.content}" for name, plan_file in sorted(files.items())]
    return ImageSpec(
        dockerfile=dockerfile,
        repository=f"{project_name}/toolchain-{toolchain}-{engine}",
        tag=_digest(dockerfile, context_identity, *rendered)[:16],
        context_paths=context_paths,
        context_files=files,
    )


def build_id(request: BuildRequest, image: ImageSpec, files: dict[str, PlanFile]) -> str:
    """A hash of every input that affects the artifact: same id, same artifact. The source by its sha256, the
    rendered build files, the toolchain image (its Dockerfile and what its context adds) and the release date every
    timestamp is set to. What only acts on an artifact once it exists (verify, signing, publishing) and `--no-cache`
    are left out by `make_plan`, which computes the id from the request without them."""
    inputs = {
        "slurm": [request.slurm.tag, request.slurm.sha256],
        "source_date_epoch": request.slurm.source_date_epoch,
        "engine": request.engine.value,
        "gpu": request.gpu,
        "image": image.tag,
        **({"arch": request.arch.value, "build_arch": request.build_arch.value} if request.arch != "amd64" else {}),
    }
    return inputs_id(inputs, request.toolchain, request.base_image, dockerfile=image.dockerfile, files=files)


# Options that never change the tarball: verification, signing and publishing act on an artifact once it exists;
# `--no-cache` changes how it is built, not what; a local source path is checked against the release's sha256.
IDENTITY_NEUTRAL: dict[str, Any] = {
    "verify": False,
    "no_cache": False,
    "publish": PublishMode.NONE,
    "publish_url": None,
    "signing_key": None,
    "gpg_private_key": None,
    "gpg_passphrase": None,
    "slurm_source": None,
    "s3_endpoint_url": None,
    "releases_file": None,
    "upgrade_from": None,
    # The tarball is the same whether or not packages are built beside it (they have their own id).
    "package": PackageKind.TARBALL,
    "package_release": DEFAULT_RELEASE,
    "package_maintainer": None,
}


def identity_request(request: BuildRequest) -> BuildRequest:
    """The request as far as it decides the artifact's bytes."""
    return request.model_copy(update=IDENTITY_NEUTRAL)


def inputs_id(
    specific: dict[str, Any], toolchain: Toolchain, base_image: str, *, dockerfile: str, files: dict[str, PlanFile]
) -> str:
    inputs = {
        **specific,
        "tool": __version__,
        "toolchain": toolchain.model_dump(mode="json"),
        "base_image": base_image,
        "dockerfile": dockerfile,
        "files": {name: [plan_file.content, plan_file.mode] for name, plan_file in sorted(files.items())},
    }
    return _digest(json.dumps(inputs, sort_keys=True))[:16]


def container_environment(
    settings: Settings,
    *,
    no_cache: bool,
    signing_key: str | None = None,
    uses_s3: bool = False,
    concretization_inputs: str | None = None,
) -> dict[str, str]:
    """Build parallelism, `--no-cache` switching ccache off, the id (never the key) a buildcache push signs with,
    where boto3 finds the S3 credentials files that are written to the tmpfs (paths, never the secrets), and the
    digest a Spack concretization is stored under (plan/spack.py `concretization_inputs`)."""
    environment = {"SLURM_FACTORY_JOBS": str(settings.jobs)}
    if concretization_inputs is not None:
        environment["SLURM_FACTORY_CONCRETIZATION_INPUTS"] = concretization_inputs
    if no_cache:
        environment["CCACHE_DISABLE"] = "1"
    if signing_key is not None:
        environment["SLURM_FACTORY_SIGNING_KEY"] = signing_key
    if uses_s3:
        environment.update(
            AWS_SHARED_CREDENTIALS_FILE=str(layout.SECRETS / s3.CREDENTIALS_FILE),
            AWS_CONFIG_FILE=str(layout.SECRETS / s3.CONFIG_FILE),
            # The host resolved the credentials (instance roles included); the container asks no metadata service.
            AWS_EC2_METADATA_DISABLED="true",
        )
    return environment


def spack_mounts(
    settings: Settings, *, buildcache_writable: bool, publish_url: str | None, buildcache_url: str | None = None
) -> tuple[Mount, ...]:
    """Spack's caches at stable container paths; the local binary mirror is writable only when pushed to; other
    file:// mirrors at fixed paths (the publish target writable, a read mirror read-only)."""
    mounts = [
        Mount(settings.sourcecache_dir, layout.SOURCE_MIRROR),
        Mount(settings.ccache_dir, layout.CCACHE),
        Mount(settings.binary_index_dir, layout.BINARY_INDEX),
        Mount(settings.concretizations_dir, layout.CONCRETIZATIONS),
        Mount(settings.buildcache_dir, layout.BUILDCACHE, read_only=not buildcache_writable),
    ]
    publish_directory = file_url_path(publish_url)
    if publish_directory is not None:
        mounts.append(Mount(publish_directory, layout.PUBLISH_MIRROR))
    read_directory = file_url_path(buildcache_url)
    if read_directory is not None:
        mounts.append(Mount(read_directory, layout.REMOTE_BUILDCACHE, read_only=True))
    return tuple(mounts)


def script_command(name: str) -> tuple[str, ...]:
    return ("bash", str(layout.PLAN / name))


def compile_container(
    request: BuildRequest, settings: Settings, *, script: str, install_prefix: PurePosixPath, files: dict[str, PlanFile]
) -> ContainerSpec:
    """The container that compiles Slurm from the source mirror with the ccache (the native tarball and the native
    packages): `script` of `files` (relative to the plan directory) runs, `install_prefix` is copied out."""
    return ContainerSpec(
        command=script_command(script),
        mounts=(
            Mount(settings.sourcecache_dir, layout.SOURCE_MIRROR, read_only=True),
            Mount(settings.ccache_dir, layout.CCACHE),
        ),
        environment=container_environment(settings, no_cache=request.no_cache),
        install_prefix=install_prefix,
        meta_dir=layout.META_DIR,
        files={layout.PLAN / name: plan_file for name, plan_file in files.items()},
    )


def foreign_suffix(request: BuildRequest | CompilerRequest) -> str:
    """The toolchain image of a build for another arch: `-cross-arm64` (host tools, arm64 -dev packages) or
    `-arm64` (the arch's own image, run under emulation)."""
    if request.cross:
        return f"-cross-{request.arch.value}"
    return f"-{request.arch.value}" if request.emulated else ""


_Request = TypeVar("_Request", BuildRequest, CompilerRequest)


def spack_image_inputs(request: BuildRequest | CompilerRequest) -> ImageInputs:
    return image_inputs(request.spack_source, request.spack_packages_source, request.python_wheels)


def local_mirror_as_default(request: _Request, settings: Settings) -> _Request:
    """`--publish-url` naming the local buildcache is the default target: one mount and one push, not two."""
    directory = file_url_path(request.publish_url)
    if directory is not None and directory.resolve() == settings.buildcache_dir.resolve():
        return request.model_copy(update={"publish_url": None})
    return request


def spack_image(
    request: BuildRequest | CompilerRequest, dockerfile: str, inputs: ImageInputs, *, settings: Settings
) -> ImageSpec:
    """The Spack toolchain image (`toolchain-<name>[-arm64]-spack`), with the Spack and wheels it is built from."""
    return image_spec(
        request.toolchain.name + foreign_suffix(request),
        "spack",
        dockerfile,
        project_name=settings.project_name,
        context=(inputs.context_paths, inputs.identity),
    )


def make_plan(request: BuildRequest, settings: Settings) -> BuildPlan:
    """The plan of `request`, identified by what decides its artifact (see `IDENTITY_NEUTRAL`)."""
    engine = engine_for(request.engine)
    plan = engine.plan(request, settings)
    neutral = identity_request(request)
    if neutral == request:
        return plan
    identity = engine.plan(neutral, settings).build_id
    return dataclasses.replace(plan, build_id=identity, log_path=settings.logs_dir / f"{identity}.log")


def _require_plan_directory(directory: Path, ours: set[Path]) -> None:
    """`directory` is missing, empty, or holds only a build context written before (the same file names), and no
    symbolic link: a link placed there (a predictable path in /tmp) would have the context written over its
    target."""
    if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
        raise ConfigurationError(f"--plan-dir {directory}: it is a file or a link, not a directory")
    if not directory.is_dir():
        return
    others: list[str] = []
    try:
        for path in directory.rglob("*"):
            if path.is_symlink():
                raise ConfigurationError(
                    f"--plan-dir {directory}: it holds a symbolic link, {path.relative_to(directory)}; the build "
                    "context is not written through links",
                    hint="give a new or empty directory",
                )
            if not path.is_dir() and path not in ours:
                others.append(str(path.relative_to(directory)))
                if len(others) > 3:
                    break
    except OSError as error:
        raise ConfigurationError(f"--plan-dir {directory}: cannot read {error.filename}: {error.strerror}") from None
    if others:
        shown = ", ".join(sorted(others)[:3]) + (" and more" if len(others) > 3 else "")
        raise ConfigurationError(
            f"--plan-dir {directory}: the directory holds files that are not this request's build context ({shown})",
            hint="give a new or empty directory",
        )


def _write_plan_file(target: Path, plan_file: PlanFile) -> None:
    """Create or replace `target`, never through a link (O_NOFOLLOW) and with its mode from the start."""
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, plan_file.mode)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        os.fchmod(stream.fileno(), plan_file.mode)  # whatever the umask, and for a file written before
        stream.write(plan_file.content)


# Where `--plan-dir` (and `--dry-run`) put the native package build's context, beside the tarball's.
PACKAGES_CONTEXT_DIR = "packages"


def request_context_files(plan: BuildPlan, package_plan: PackagePlan | None) -> dict[str, PlanFile]:
    """Everything a build request renders, as `--plan-dir` writes it: the tarball's build context when the
    tarball is built, else only the toolchain image it shares with the packages (the packaging image starts FROM
    it); the package build's context below `packages/`."""
    if plan.request.builds_tarball:
        files = plan.context_files()
    else:
        files = {"Dockerfile": PlanFile(plan.image.dockerfile), **plan.image.context_files}
    if package_plan is not None:
        files.update({f"{PACKAGES_CONTEXT_DIR}/{name}": f for name, f in package_plan.context_files().items()})
    return files


def write_plan_dir(plan: BuildPlan | CompilerPlan, directory: Path) -> list[Path]:
    """Write the rendered build context into `directory` (for inspection, or to build by hand). A directory that
    holds anything else is refused: the context is written beside nothing of the user's, and over nothing."""
    return write_context_files(plan.context_files(), directory)


def write_context_files(files: dict[str, PlanFile], directory: Path) -> list[Path]:
    """`write_plan_dir` of rendered files (relative path -> file), e.g. `request_context_files`."""
    _require_plan_directory(directory, {directory / relative for relative in files})
    written = []
    try:
        for relative, plan_file in sorted(files.items()):
            target = directory / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_plan_file(target, plan_file)
            written.append(target)
    except OSError as error:
        raise ConfigurationError(f"--plan-dir {directory}: cannot write {error.filename}: {error.strerror}") from None
    return written


def make_compiler_plan(request: CompilerRequest, settings: Settings) -> CompilerPlan:
    """`build-compiler`: the Spack toolchain image of that OS, a GCC environment, a push to the binary mirror."""
    request = local_mirror_as_default(request, settings)
    inputs = spack_image_inputs(request)
    dockerfile = spack.render_dockerfile(request.toolchain, request.base_image, inputs)
    plan_files = {
        layout.PLAN / spack.COMPILER_SCRIPT: spack.render_compiler_script(request),
        layout.PLAN / spack.COMPILER_PUBLISH_SCRIPT: spack.render_compiler_publish_script(request),
        layout.PLAN / spack.ENVIRONMENT_FILE: spack.render_compiler_environment(request),
    }
    artifact_files = render_compiler_artifact_files(request)
    identity = inputs_id(
        {"gcc": request.gcc_version, "signed": request.signing_key is not None},
        request.toolchain,
        request.base_image,
        dockerfile=dockerfile,
        files={str(path): plan_file for path, plan_file in plan_files.items()} | artifact_files,
    )
    elsewhere = spack.compiler_publishes_elsewhere(request)
    image = spack_image(request, dockerfile, inputs, settings=settings)
    container = ContainerSpec(
        command=script_command(spack.COMPILER_SCRIPT),
        mounts=spack_mounts(settings, buildcache_writable=True, publish_url=request.publish_url if elsewhere else None),
        environment=container_environment(
            settings,
            no_cache=request.no_cache,
            signing_key=request.signing_key,
            uses_s3=elsewhere and s3.is_s3_url(request.publish_url),
            concretization_inputs=spack.concretization_inputs(spack.compiler_environment(request), image.tag, {}),
        ),
        install_prefix=layout.install_prefix(request.artifact_root),
        meta_dir=layout.META_DIR,
        files=plan_files,
        publish_command=script_command(spack.COMPILER_PUBLISH_SCRIPT),
    )
    return CompilerPlan(
        request=request,
        build_id=identity,
        image=image,
        container=container,
        artifact_files=artifact_files,
        artifact_path=settings.builds_dir / request.artifact_filename,
        log_path=settings.logs_dir / f"{identity}.log",
    )
