"""Open an artifact for verification: prove it is a slurm-factory tarball and read its manifest."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from slurm_factory.artifact import MANIFEST_NAME
from slurm_factory.catalog import Toolchain
from slurm_factory.catalog.toolchains import load_toolchains
from slurm_factory.exceptions import ConfigurationError
from slurm_factory.source import sha256_of


@dataclass(frozen=True)
class ArtifactUnderTest:
    path: Path
    root: str
    manifest: dict[str, Any]
    sha256: str
    toolchain: Toolchain

    @property
    def base_image(self) -> str:
        return str(self.manifest["toolchain"]["base_image"])

    @property
    def build_prefix(self) -> str:
        return str(self.manifest["build_prefix"])

    @property
    def build_paths(self) -> list[str]:
        """Container paths no file of the relocated tree may name (older manifests: just the build prefix)."""
        return [str(path) for path in self.manifest.get("build_paths") or [self.build_prefix]]

    @property
    def gpu(self) -> bool:
        return bool(self.manifest.get("gpu"))

    @property
    def spack_modules(self) -> str | None:
        """`flat` or `hierarchy`: the Spack engine's Lmod tree under modules/spack (None: no such tree)."""
        tree = self.manifest.get("spack_modules")
        return tree if tree in ("flat", "hierarchy") else None

    @property
    def series(self) -> str:
        return str(self.manifest["slurm"]["series"])

    @property
    def version(self) -> str:
        return str(self.manifest["slurm"]["version"])

    def members(self) -> Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]:
        """Stream the tarball's members (with their data for regular files), paths relative to the root."""
        with tarfile.open(self.path, mode="r|gz") as archive:
            for member in archive:
                data = archive.extractfile(member) if member.isfile() else None
                yield member, data


def _not_an_artifact(path: Path, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"{path} is not a slurm-factory artifact: {why}",
        hint="verify takes a tarball from ~/.slurm-factory/builds/ (slurm-<series>-<toolchain>[-gpu]-software.tar.gz)",
    )


def _read_manifest(path: Path) -> tuple[str, dict[str, Any]]:
    roots: set[str] = set()
    manifest_bytes: bytes | None = None
    try:
        with tarfile.open(path, mode="r|gz") as archive:
            for member in archive:
                parts = member.name.strip("/").split("/")
                roots.add(parts[0])
                if len(parts) == 2 and parts[1] == MANIFEST_NAME and member.isfile():
                    extracted = archive.extractfile(member)
                    manifest_bytes = extracted.read() if extracted else None
    except (tarfile.TarError, OSError, EOFError) as error:
        raise _not_an_artifact(path, f"not a readable gzip-compressed tarball ({error})") from None
    if len(roots) != 1:
        raise _not_an_artifact(path, f"expected one top-level directory, found {len(roots)}")
    if manifest_bytes is None:
        raise _not_an_artifact(path, f"no {MANIFEST_NAME} in its top-level directory")
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError:
        raise _not_an_artifact(path, f"{MANIFEST_NAME} is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("tool", {}).get("name") != "slurm-factory":
        raise _not_an_artifact(path, f"{MANIFEST_NAME} was not written by slurm-factory")
    return roots.pop(), manifest


def open_artifact(path: Path) -> ArtifactUnderTest:
    if not path.is_file():
        raise ConfigurationError(f"{path}: no such file")
    root, manifest = _read_manifest(path)
    toolchains = load_toolchains()
    name = manifest.get("toolchain", {}).get("name")
    if name not in toolchains:
        raise _not_an_artifact(path, f"its manifest names an unknown toolchain {name!r}")
    return ArtifactUnderTest(path, root, manifest, sha256_of(path), toolchains[name])
