"""The verification images, rendered from templates: runtime-only, and runtime + Lmod + MPI for the cluster."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import PurePosixPath

from slurm_factory.choices import arch_suffix, host_arch
from slurm_factory.docker_engine import PROJECT_LABEL, ROLE_LABEL
from slurm_factory.exceptions import ConfigurationError
from slurm_factory.plan.model import ImageSpec, PlanFile
from slurm_factory.plan.templating import render
from slurm_factory.verify.artifact_reader import ArtifactUnderTest

# Files the verification containers run, shipped as package data (templates/verify/).
NODE_FILES = (
    "ldd-check.sh",
    "node-setup.sh",
    "package-node-setup.sh",
    "node-accounts.sh",
    "module-check.sh",
    "db-start.sh",
)
CHECK_DIR = PurePosixPath("/verify")
MPI_BUILD_ROLE = "verify-mpi-build"


def verify_file(name: str) -> str:
    return resources.files("slurm_factory").joinpath("templates", "verify", name).read_text(encoding="utf-8")


def _tag(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class VerifyImages:
    runtime: ImageSpec
    cluster: ImageSpec
    cluster_context: dict[PurePosixPath, PlanFile]
    # The accounting database: the toolchain OS's MariaDB server (the same for every artifact of that OS).
    database: ImageSpec


def emulated(artifact: ArtifactUnderTest) -> bool:
    """The artifact is for another machine than this host: its checks run under qemu emulation."""
    host = host_arch()
    return host is not None and artifact.arch != host.value


def checked_base_image(artifact: ArtifactUnderTest, present: Callable[[str], bool]) -> str:
    """The image the checks start from. For another arch than the host's, the catalog's image of that arch (a cross
    build's manifest names the build host's image). Otherwise the manifest's own only when it is the toolchain's
    catalog image or already on this host (`present`): an untrusted manifest must not make verify pull, and run with
    the build network, an image of its choosing; else the toolchain's catalog image (the same OS)."""
    if emulated(artifact):
        support = artifact.toolchain.arches.get(artifact.arch)
        if support is None or support.base_image is None:
            raise ConfigurationError(
                f"the catalog has no {artifact.arch} image of {artifact.toolchain.name} to verify this artifact in",
                hint=f"verify it on an {artifact.arch} host",
            )
        return support.base_image
    named = artifact.base_image
    if named == artifact.toolchain.base_image or present(named):
        return named
    return artifact.toolchain.base_image


def verify_images(
    artifact: ArtifactUnderTest,
    project_name: str,
    base_image: str | None = None,
    *,
    extra_runtime_packages: tuple[str, ...] = (),
) -> VerifyImages:
    """`extra_runtime_packages`: what another release the cluster runs needs too (an upgrade's old release)."""
    base_image = base_image or artifact.base_image
    toolchain = artifact.toolchain
    verify = toolchain.packages.verify
    runtime_packages = [*verify.base_packages, *artifact.manifest.get("runtime_packages", []), *extra_runtime_packages]
    runtime_dockerfile = render(
        "verify/runtime.Dockerfile.j2",
        toolchain=toolchain,
        base_image=base_image,
        install_packages=list(dict.fromkeys(runtime_packages)),
    )
    # Another arch's images are named for it: both can be on one engine.
    name = toolchain.name + arch_suffix(artifact.arch)
    runtime = ImageSpec(runtime_dockerfile, f"{project_name}/verify-runtime-{name}", _tag(runtime_dockerfile))
    hello = verify_file("mpi-hello.c")
    cluster_dockerfile = render(
        "verify/cluster.Dockerfile.j2",
        # The build stage's image stays behind as an untagged image: labelled, `clean --full` finds it.
        stage_labels={PROJECT_LABEL: project_name, ROLE_LABEL: MPI_BUILD_ROLE},
        toolchain=toolchain,
        verify=verify,
        base_image=base_image,
        runtime_image=runtime.reference,
        cluster_packages=[*verify.lmod_packages, *verify.mpi_runtime_packages, *verify.cluster_tools],
    )
    cluster = ImageSpec(cluster_dockerfile, f"{project_name}/verify-cluster-{name}", _tag(cluster_dockerfile, hello))
    database_dockerfile = render(
        "verify/runtime.Dockerfile.j2",
        toolchain=toolchain,
        base_image=base_image,
        install_packages=list(dict.fromkeys([*verify.base_packages, *verify.database_packages])),
    )
    database = ImageSpec(database_dockerfile, f"{project_name}/verify-db-{name}", _tag(database_dockerfile))
    return VerifyImages(runtime, cluster, {PurePosixPath("mpi-hello.c"): PlanFile(hello)}, database)


def node_files() -> dict[PurePosixPath, PlanFile]:
    return {CHECK_DIR / name: PlanFile(verify_file(name), mode=0o755) for name in NODE_FILES}
