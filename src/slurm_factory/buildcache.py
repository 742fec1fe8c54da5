"""What a local Spack binary mirror holds (Spack 1.x layout v3: `v3/manifests/spec/<name>/<name>-<version>-<hash>
.spec.manifest.json`) — read on the host, so a missing compiler fails before any container starts."""

from __future__ import annotations

from pathlib import Path

SPEC_MANIFESTS = Path("v3", "manifests", "spec")


def cached_specs(mirror: Path, name: str, version: str) -> list[Path]:
    """The spec manifests of `name@version` in the mirror (any hash)."""
    directory = mirror / SPEC_MANIFESTS / name
    return sorted(directory.glob(f"{name}-{version}-*.spec.manifest.json")) if directory.is_dir() else []
