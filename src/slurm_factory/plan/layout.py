"""Fixed paths inside build containers.

They never change between builds, so ccache and the source/binary mirrors hit across builds; per-build scratch
lives inside the container.
"""

from __future__ import annotations

from pathlib import PurePosixPath

SOURCE_MIRROR = PurePosixPath("/var/cache/slurm-factory/sources")
CCACHE = PurePosixPath("/var/cache/slurm-factory/ccache")
PLAN = PurePosixPath("/opt/slurm-factory/plan")
BUILD_ROOT = PurePosixPath("/opt/slurm-factory-build")
BUILD_DIR = PurePosixPath("/build/src")
META_DIR = PurePosixPath("/build/meta")


def source_mirror_path(sha256: str) -> PurePosixPath:
    """Spack's source-mirror layout (`_source-cache/archive/<sha[:2]>/<sha>.tar.gz`), shared by both engines."""
    return PurePosixPath("_source-cache", "archive", sha256[:2], f"{sha256}.tar.gz")


def install_prefix(artifact_root: str) -> PurePosixPath:
    return BUILD_ROOT / artifact_root


BUILDCACHE = PurePosixPath("/var/cache/slurm-factory/buildcache")
# Host directories of file:// mirrors other than the local buildcache (--publish-url, --buildcache-url).
PUBLISH_MIRROR = PurePosixPath("/var/cache/slurm-factory/publish-mirror")
REMOTE_BUILDCACHE = PurePosixPath("/var/cache/slurm-factory/remote-buildcache")
BINARY_INDEX = PurePosixPath("/var/cache/slurm-factory/binary_index")
# Spack concretizations (spack.lock) stored by what decides them, reused by the next build of the same inputs.
CONCRETIZATIONS = PurePosixPath("/var/cache/slurm-factory/concretizations")
SECRETS = PurePosixPath("/run/slurm-factory-secrets")

# The Spack engine: Spack and the builtin package repository live in the toolchain image; the install tree, view and
# generated modules in the build container.
SPACK_ROOT = PurePosixPath("/opt/spack")
SPACK_PACKAGES = PurePosixPath("/opt/spack-packages")
SPACK_PYTHON = PurePosixPath("/opt/spack-python")
SPACK_INSTALL_TREE = PurePosixPath("/opt/slurm-factory/spack/opt")
SPACK_VIEW = PurePosixPath("/opt/slurm-factory/spack/view")
SPACK_MODULES = PurePosixPath("/opt/slurm-factory/spack/modules")
SPACK_COMPILER_VIEW = PurePosixPath("/opt/slurm-factory/spack/compiler")
