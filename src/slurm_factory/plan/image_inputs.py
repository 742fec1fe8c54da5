"""Where the Spack toolchain image gets Spack, the builtin packages and the Python wheels Spack runs with.

By default the image clones the pinned Spack release and spack-packages commit and installs clingo and boto3 from
PyPI. Air-gapped sites give local copies instead (`--spack-source`, `--spack-packages-source`, `--python-wheels`):
a directory or tarball goes into the image's build context, a URL is fetched by the image build. Each input
contributes to the image tag, so a changed copy builds a new image.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from slurm_factory.source import sha256_of

# Names in the image build context (see templates/dockerfile/spack.Dockerfile.j2).
SPACK_CONTEXT = "spack-source"
PACKAGES_CONTEXT = "spack-packages-source"
WHEELS_CONTEXT = "python-wheels"


@dataclass(frozen=True)
class ImageInputs:
    """How the Dockerfile gets each input: None (fetch the pinned one), "directory", "tarball" or a URL."""

    spack: str | None = None
    packages: str | None = None
    wheels: bool = False
    context_paths: dict[str, Path] = field(default_factory=dict)
    identity: str = ""


def directory_identity(directory: Path) -> str:
    """What a directory holds (every file's path, size and modification time, .git aside): an in-place update of a
    checkout changes it, while reading no file's content keeps it cheap for a tree of thousands of files."""
    hasher = hashlib.sha256()
    for root, directories, files in os.walk(directory):
        directories[:] = sorted(name for name in directories if name != ".git")
        for name in sorted(files):
            path = Path(root, name)
            status = path.lstat()
            hasher.update(f"{path.relative_to(directory)}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
    return hasher.hexdigest()


def _tree_input(source: str | None, context_name: str) -> tuple[str | None, dict[str, Path], str]:
    if source is None or source.startswith(("http://", "https://")):
        return source, {}, source or ""
    path = Path(source)
    if path.is_dir():
        return "directory", {context_name: path}, f"directory:{directory_identity(path)}"
    return "tarball", {f"{context_name}.tar.gz": path}, f"tarball:{sha256_of(path)}"


def _wheels_identity(directory: Path) -> str:
    return ",".join(f"{wheel.name}:{sha256_of(wheel)}" for wheel in sorted(directory.glob("*.whl")))


def image_inputs(spack_source: str | None, packages_source: str | None, python_wheels: str | None) -> ImageInputs:
    spack, spack_paths, spack_identity = _tree_input(spack_source, SPACK_CONTEXT)
    packages, packages_paths, packages_identity = _tree_input(packages_source, PACKAGES_CONTEXT)
    wheel_paths = {WHEELS_CONTEXT: Path(python_wheels)} if python_wheels is not None else {}
    wheels_identity = _wheels_identity(Path(python_wheels)) if python_wheels is not None else ""
    return ImageInputs(
        spack=spack,
        packages=packages,
        wheels=python_wheels is not None,
        context_paths={**spack_paths, **packages_paths, **wheel_paths},
        identity="\n".join(
            f"{name}={value}"
            for name, value in (("spack", spack_identity), ("packages", packages_identity), ("wheels", wheels_identity))
            if value
        ),
    )
