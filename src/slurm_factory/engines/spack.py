"""The Spack engine: a Spack environment builds Slurm and its dependency stack (what `--os-packages` leaves to Spack)
in the toolchain's Spack image, installs from and pushes to binary buildcaches (signed, inside the build container),
and writes Lmod modules beside the artifact's own modulefile."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slurm_factory import s3
from slurm_factory.choices import Engine, OsPackagesMode, PublishMode
from slurm_factory.engines import BuildEngine
from slurm_factory.plan import (
    BuildPlan,
    ContainerSpec,
    build_id,
    container_environment,
    layout,
    local_mirror_as_default,
    native,
    script_command,
    spack,
    spack_image,
    spack_image_inputs,
    spack_mounts,
)
from slurm_factory.plan.artifact_files import render_artifact_files
from slurm_factory.spack_concretization import run_time_closure

if TYPE_CHECKING:
    from slurm_factory.catalog import Toolchain
    from slurm_factory.config import Settings
    from slurm_factory.request import BuildRequest


class SpackEngine(BuildEngine):
    kind = Engine.SPACK
    runs_spack = True
    cross_compiles = False  # Spack has no cross path: a foreign arch builds inside that arch's image of the OS
    default_os_packages = OsPackagesMode.BUILD
    chooses_os_packages = True
    # `slurm` and `deps` push packages to the buildcache in the container; `all` adds the tarball.
    tarball_publish_modes = frozenset({PublishMode.ALL})

    def supports_gpu(self, toolchain: Toolchain) -> bool:
        return True  # Spack builds the CUDA and ROCm pieces Slurm's plugins need on every toolchain

    def plan(self, request: BuildRequest, settings: Settings) -> BuildPlan:
        request = local_mirror_as_default(request, settings)
        inputs = spack_image_inputs(request)
        dockerfile = spack.render_dockerfile(
            request.toolchain, request.base_image, inputs, request.os_packages, gpu=request.gpu
        )
        plan_files = {
            layout.PLAN / spack.BUILD_SCRIPT: spack.render_build_script(request),
            layout.PLAN / spack.ENVIRONMENT_FILE: spack.render_environment(request),
            **{layout.PLAN / name: plan_file for name, plan_file in spack.render_os_externals(request).items()},
            **{layout.PLAN / name: plan_file for name, plan_file in spack.render_overlay_repo(request).items()},
            layout.PLAN / native.PAM_LOADER: native.pam_loader_file(),
        }
        publish_script = spack.render_publish_script(request)
        if publish_script is not None:
            plan_files[layout.PLAN / spack.PUBLISH_SCRIPT] = publish_script
        if request.compiler_version is not None:
            compiler_environment = layout.PLAN / spack.COMPILER_ENVIRONMENT / spack.ENVIRONMENT_FILE
            plan_files[compiler_environment] = spack.render_compiler_install_environment(request)
        artifact_files = render_artifact_files(request)
        image = spack_image(request, dockerfile, inputs, settings=settings)
        identity = build_id(
            request, image, {str(path): plan_file for path, plan_file in plan_files.items()} | artifact_files
        )
        publishes = request.publish is not PublishMode.NONE
        container = ContainerSpec(
            command=script_command(spack.BUILD_SCRIPT),
            mounts=spack_mounts(
                settings,
                buildcache_writable=publishes and request.publish_url is None,
                publish_url=request.publish_url if publishes else None,
                buildcache_url=request.buildcache_url,
            ),
            environment=container_environment(
                settings,
                no_cache=request.no_cache,
                signing_key=request.signing_key if publishes else None,
                uses_s3=s3.is_s3_url(request.publish_url) or s3.is_s3_url(request.buildcache_url),
                concretization_inputs=spack.concretization_inputs(
                    spack.environment(request), image.tag, spack.render_overlay_repo(request)
                ),
            ),
            install_prefix=layout.install_prefix(request.artifact_root),
            meta_dir=layout.META_DIR,
            files=plan_files,
            publish_command=script_command(spack.PUBLISH_SCRIPT) if publishes else None,
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

    def build_paths(self, plan: BuildPlan) -> list[str]:
        # Spack writes its view, install tree and module roots into text files it copies or relocates.
        spack_paths = (layout.SPACK_VIEW, layout.SPACK_INSTALL_TREE, layout.SPACK_MODULES, layout.SPACK_COMPILER_VIEW)
        return [*super().build_paths(plan), *(str(path) for path in spack_paths)]

    def runtime_packages(
        self, request: BuildRequest, meta: dict[str, str], externals: list[dict[str, Any]]
    ) -> set[str]:
        # The runtime packages of every OS-supplied library in Slurm's link/run closure.
        closure = run_time_closure(meta.get("spack.lock"), "slurm")
        packages: set[str] = set()
        for external in externals:
            if external.get("name") in closure:
                packages |= set(external.get("runtime_packages", []))
        return packages

    def manifest_fields(self, request: BuildRequest) -> dict[str, Any]:
        return {
            # The compiler Spack built everything with (the OS GCC, or the --compiler-version GCC from the buildcache).
            "spack_compiler": f"gcc@{request.compiler_version or request.toolchain.spack.compiler}",
            # What the Spack engine took from the toolchain OS (each package with its OS version: os_externals).
            "os_packages": request.os_packages.value,
            # Spack's Lmod tree under modules/spack (the artifact's own modulefile is modules/slurm either way).
            "spack_modules": "hierarchy" if request.enable_hierarchy else "flat",
        }

    def publishes_in_container(self, request: BuildRequest) -> bool:
        return request.publish is not PublishMode.NONE

    def describe(self, request: BuildRequest) -> str:
        return f"{self.kind.value} (--os-packages {request.os_packages.value})"


ENGINE = SpackEngine()
