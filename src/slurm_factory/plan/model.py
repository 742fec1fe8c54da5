"""The plan: everything a build will do, rendered up front and free of side effects.

`--dry-run` prints it, `--plan-dir` writes its files, and the engine executes exactly this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from slurm_factory.plan.layout import PLAN as PLAN_DIR
from slurm_factory.request import BuildRequest, CompilerRequest

# 2020-01-01T00:00:00Z
COMPILER_SOURCE_DATE_EPOCH = 1577836800


@dataclass(frozen=True)
class PlanFile:
    """A rendered file: its text and its permission bits."""

    content: str
    mode: int = 0o644


@dataclass(frozen=True)
class Mount:
    """A host directory bind-mounted into the build container."""

    host: Path
    container: PurePosixPath
    read_only: bool = False


@dataclass(frozen=True)
class ImageSpec:
    """The toolchain image: its Dockerfile and the tag derived from the Dockerfile's hash (and its context)."""

    dockerfile: str
    repository: str
    tag: str
    context_paths: dict[str, Path] = field(default_factory=dict)
    # Rendered files the Dockerfile COPYs (by their path in the build context).
    context_files: dict[str, PlanFile] = field(default_factory=dict)

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass(frozen=True)
class ContainerSpec:
    """How the build container runs: command, mounts, environment and what comes out of it. `publish_command`, when
    set, runs in the same container after a successful build (the signing key is handed over only for it)."""

    command: tuple[str, ...]
    mounts: tuple[Mount, ...]
    environment: dict[str, str]
    install_prefix: PurePosixPath
    meta_dir: PurePosixPath
    files: dict[PurePosixPath, PlanFile] = field(default_factory=dict)
    publish_command: tuple[str, ...] | None = None


@dataclass(frozen=True)
class _ContainerBuild:
    """What every plan has: an id, the toolchain image, the build container and the tarball it becomes."""

    build_id: str
    image: ImageSpec
    container: ContainerSpec
    artifact_files: dict[str, PlanFile]
    artifact_path: Path
    log_path: Path

    def context_files(self) -> dict[str, PlanFile]:
        return context_files(self.image, self.container, self.artifact_files)


@dataclass(frozen=True)
class BuildPlan(_ContainerBuild):
    """A validated Slurm build request rendered into files, an image, a container run and an artifact destination."""

    request: BuildRequest
    source_cache_path: Path

    @property
    def artifact_root(self) -> str:
        return self.request.artifact_root

    @property
    def source_date_epoch(self) -> int:
        return self.request.slurm.source_date_epoch


@dataclass(frozen=True)
class PackagePlan(_ContainerBuild):
    """`--package deb`: the packaging image (the toolchain image and the packaging tools), the container that builds
    the package set, and where the set is stored. `artifact_path` is the stored set's directory."""

    request: BuildRequest
    source_cache_path: Path
    version: str
    # The toolchain image the packaging image is built FROM (it is built first when missing).
    toolchain_image: ImageSpec
    # The package format: "deb" (apt toolchains) or "rpm" (dnf ones).
    kind: str = "deb"

    @property
    def artifact_root(self) -> str:
        return f"slurm-smd {self.version}"


@dataclass(frozen=True)
class CompilerPlan(_ContainerBuild):
    """A validated `build-compiler` request rendered like a build plan (same image, container and tarball shape)."""

    request: CompilerRequest

    @property
    def artifact_root(self) -> str:
        return self.request.artifact_root

    @property
    def source_date_epoch(self) -> int:
        """A GCC has no Slurm release date; a fixed epoch keeps its tarball reproducible all the same."""
        return COMPILER_SOURCE_DATE_EPOCH


def context_files(
    image: ImageSpec, container: ContainerSpec, artifact_files: dict[str, PlanFile]
) -> dict[str, PlanFile]:
    """The build context as `--plan-dir` writes it: Dockerfile, scripts and the artifact's generated files."""
    files = {"Dockerfile": PlanFile(image.dockerfile), **image.context_files}
    for container_path, plan_file in container.files.items():
        files[str(container_path.relative_to(PLAN_DIR))] = plan_file
    for relative, plan_file in artifact_files.items():
        files[f"artifact/{relative}"] = plan_file
    return files
