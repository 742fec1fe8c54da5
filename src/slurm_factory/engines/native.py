"""The native engine: Slurm configured and compiled against the toolchain OS's own -dev packages, in a container
of that OS (or its cross toolchain for another arch); the artifact needs the OS's runtime packages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slurm_factory.choices import Engine, OsPackagesMode, PublishMode
from slurm_factory.engines import BuildEngine
from slurm_factory.plan import (
    BuildPlan,
    build_id,
    compile_container,
    foreign_suffix,
    image_spec,
    layout,
    native,
)
from slurm_factory.plan.artifact_files import render_artifact_files

if TYPE_CHECKING:
    from slurm_factory.catalog import Toolchain
    from slurm_factory.config import Settings
    from slurm_factory.request import BuildRequest


class NativeEngine(BuildEngine):
    kind = Engine.NATIVE
    runs_spack = False
    cross_compiles = True
    default_os_packages = OsPackagesMode.ALL  # every library is the OS's: that is what the engine is
    chooses_os_packages = False
    tarball_publish_modes = frozenset({PublishMode.SLURM, PublishMode.ALL})
    without_spack = "does not use Spack"
    builds_native_packages = True

    def supports_gpu(self, toolchain: Toolchain) -> bool:
        return toolchain.native.supports_gpu

    def plan(self, request: BuildRequest, settings: Settings) -> BuildPlan:
        dockerfile = native.render_dockerfile(request)
        build_files = {native.BUILD_SCRIPT: native.render_build_script(request), **native.plan_files(request)}
        artifact_files = render_artifact_files(request)
        image = image_spec(
            request.toolchain.name + foreign_suffix(request),
            self.kind.value,
            dockerfile,
            project_name=settings.project_name,
            context_files=native.image_context_files(request),
        )
        identity = build_id(request, image, {**build_files, **artifact_files})
        container = compile_container(
            request,
            settings,
            script=native.BUILD_SCRIPT,
            install_prefix=layout.install_prefix(request.artifact_root),
            files=build_files,
        )
        return BuildPlan(
            request=request,
            build_id=identity,
            image=image,
            container=container,
            artifact_files=artifact_files,
            source_cache_path=settings.sourcecache_dir / layout.source_mirror_path(request.slurm.sha256),
            artifact_path=settings.builds_dir / request.artifact_filename,
            log_path=settings.logs_dir / f"{identity}.log",
        )

    def runtime_packages(
        self, request: BuildRequest, meta: dict[str, str], externals: list[dict[str, Any]]
    ) -> set[str]:
        # What the tree runs or dlopens without linking (munge's daemon, libpmix for mpi_pmix): the toolchain's list.
        return set(request.toolchain.native.runtime_packages)

    def manifest_fields(self, request: BuildRequest) -> dict[str, Any]:
        return {"spack_compiler": None, "os_packages": None, "spack_modules": None}

    def publishes_in_container(self, request: BuildRequest) -> bool:
        return False

    def describe(self, request: BuildRequest) -> str:
        return self.kind.value


ENGINE = NativeEngine()
