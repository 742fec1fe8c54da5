"""Open an untrusted artifact for verification: check the path, scan its members, read and check its manifest.

Only a path that is not a regular file, or a file that is not a gzip-compressed tar with a top-level manifest.json,
is a usage error (exit 2): there is nothing to verify. A tarball that is one but is unsafe or malformed is a
verification that failed (exit 1, with a report) — `verify_artifact` records those findings.
"""

from __future__ import annotations

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
from slurm_factory.verify.manifest import ManifestError, parse_manifest
from slurm_factory.verify.members import MemberScan, NotATarball, open_members, scan_members, shown


@dataclass(frozen=True)
class ArtifactUnderTest:
    path: Path
    root: str
    manifest: dict[str, Any]
    sha256: str
    toolchain: Toolchain
    # The -debug companion once verification found it beside the artifact, checked and safe to unpack.
    debug_companion: Path | None = None

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
    def arch(self) -> str:
        """The machine the artifact is for; manifests from before `--arch` are amd64."""
        return str(self.manifest.get("arch") or "amd64")

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
        """Stream the tarball's members (with their data for regular files). Only call this once the member scan
        found the tarball safe: every member is then within the size caps."""
        with open_members(self.path) as archive:
            for member in archive:
                data = archive.extractfile(member) if member.isfile() else None
                yield member, data


@dataclass(frozen=True)
class ScannedTarball:
    """A tarball that is an artifact's shape: its path, sha256 and the member scan (findings included)."""

    path: Path
    sha256: str
    scan: MemberScan


def _not_an_artifact(path: Path, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"{shown(str(path))} is not a slurm-factory artifact: {why}",
        hint="an artifact is a tarball from ~/.slurm-factory/builds/: "
        "slurm-<series>-<toolchain>[-arm64][-gpu]-software.tar.gz",
    )


def require_regular_file(path: Path) -> None:
    if not str(path).strip():
        raise ConfigurationError("verify needs the path of a tarball, not an empty string")
    try:
        path.stat()
    except FileNotFoundError:
        pass  # said below, in words
    except OSError as error:  # a name too long, a loop of symlinks, a component that is a file
        raise ConfigurationError(f"{shown(str(path))}: {error.strerror}") from None
    if path.is_dir():
        raise _not_an_artifact(path, "it is a directory")
    if not path.exists():
        raise ConfigurationError(f"{shown(str(path))}: no such file")
    if not path.is_file():
        raise _not_an_artifact(path, "it is not a regular file")


def scan_tarball(path: Path) -> ScannedTarball:
    """Check that `path` is an artifact-shaped tarball (else `ConfigurationError`, exit 2) and scan its members."""
    require_regular_file(path)
    try:
        scan = scan_members(path)
    except NotATarball as error:
        raise _not_an_artifact(path, f"not a readable gzip-compressed tarball ({error})") from None
    if scan.manifest is None and not scan.stopped:
        raise _not_an_artifact(path, f"no {MANIFEST_NAME} in its top-level directory")
    return ScannedTarball(path, sha256_of(path), scan)


def open_artifact(tarball: ScannedTarball) -> ArtifactUnderTest:
    """The artifact described by the tarball's manifest; `ManifestError` when the manifest is malformed."""
    scan = tarball.scan
    if scan.manifest is None or scan.root is None:
        raise ManifestError(f"no {MANIFEST_NAME} was read before the scan stopped")
    manifest = parse_manifest(scan.manifest)
    toolchains = load_toolchains()
    name = manifest["toolchain"]["name"]
    if name not in toolchains:
        raise ManifestError(f"{MANIFEST_NAME}: 'toolchain.name' is an unknown toolchain {name[:40]!r}")
    return ArtifactUnderTest(tarball.path, scan.root, manifest, tarball.sha256, toolchains[name])
