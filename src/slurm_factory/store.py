"""The artifact store: every artifact under `builds/by-id/<build id>/`, the contract's names as links.

A build id covers everything that decides an artifact's bytes (see `plan.build_id`), so a request whose id is
already stored is answered from the store instead of a container. Nothing is ever replaced by an artifact of another
identity: `builds/slurm-<series>-<toolchain>[-gpu]-software.tar.gz` and its sidecars are relative symbolic links to
the newest artifact of that request, and older ones stay until `clean --builds --keep N` prunes them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slurm_factory.artifact import COMPANION_SIDECARS, Artifact, debug_companion_name, sidecar, write_text_atomically
from slurm_factory.exceptions import ConfigurationError
from slurm_factory.plan import BuildPlan
from slurm_factory.signing import verify_signature
from slurm_factory.source import sha256_of

BY_ID = "by-id"
# Everything that may sit beside a stored tarball and is linked under the contract name with it.
SIDECARS = (".sha256", ".manifest.json", ".asc", ".verify.json", ".sbom.json", ".sbom.json.asc", ".build.json")
BUILD_RECORD = ".build.json"
ARTIFACT_PATTERN = "slurm-*-software.tar.gz"


def artifact_file_names(name: str) -> list[str]:
    """Every file of the artifact `name` that may sit in its store directory: the tarball, its sidecars, the
    -debug companion and the companion's checksum and signature."""
    companion = debug_companion_name(name)
    return [
        name,
        *(name + suffix for suffix in SIDECARS),
        companion,
        *(companion + suffix for suffix in COMPANION_SIDECARS),
    ]


def store_dir(builds_dir: Path) -> Path:
    return builds_dir / BY_ID


def stored_path(builds_dir: Path, plan: BuildPlan) -> Path:
    """Where the artifact of this plan's identity lives."""
    return store_dir(builds_dir) / plan.build_id / plan.request.artifact_filename


def _recorded_sha256(path: Path) -> str | None:
    try:
        return sidecar(path, ".sha256").read_text(encoding="utf-8").split()[0]
    except (OSError, IndexError):
        return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def find(path: Path) -> Artifact | None:
    """The stored artifact at `path`, if it is complete and its bytes are what its `.sha256` says."""
    if not path.is_file():
        return None
    recorded = _recorded_sha256(path)
    if recorded is None or sha256_of(path) != recorded:
        return None
    return Artifact(path, recorded, path.stat().st_size, _read_json(sidecar(path, ".manifest.json")))


def _link(link: Path, target: Path) -> None:
    """Point `link` at `target` with a relative symbolic link, replaced atomically."""
    temporary = link.with_name(f".{link.name}.{uuid.uuid4().hex[:12]}")
    os.symlink(os.path.relpath(target, link.parent), temporary)
    try:
        os.replace(temporary, link)
    finally:
        temporary.unlink(missing_ok=True)


def _adopt_legacy(builds_dir: Path, name: str) -> None:
    """A tarball written under the contract name by an older slurm-factory moves into the store, never away."""
    legacy = builds_dir / name
    if legacy.is_symlink() or not legacy.is_file():
        return
    manifest = _read_json(sidecar(legacy, ".manifest.json"))
    identity = str(manifest.get("build_id") or f"legacy-{sha256_of(legacy)[:16]}")
    destination = store_dir(builds_dir) / identity
    if (destination / name).exists():
        destination = store_dir(builds_dir) / f"legacy-{sha256_of(legacy)[:16]}"
    destination.mkdir(parents=True, exist_ok=True)
    for file_name in artifact_file_names(name):
        source = builds_dir / file_name
        if source.is_file() and not source.is_symlink():
            os.replace(source, destination / source.name)


def link_contract_names(builds_dir: Path, stored: Path) -> Path:
    """Make the contract's name (and each sidecar's) point at `stored`; return the tarball's link."""
    _adopt_legacy(builds_dir, stored.name)
    for file_name in artifact_file_names(stored.name):
        link = builds_dir / file_name
        target = stored.with_name(file_name)
        if target.is_file():
            _link(link, target)
        elif link.is_symlink():  # a sidecar of the previous artifact never describes this one
            link.unlink()
    return builds_dir / stored.name


def request_record(plan: BuildPlan) -> dict[str, Any]:
    """The request as `list` shows it: release, toolchain, engine and the options that shaped the artifact."""
    request = plan.request
    return {
        "slurm_version": request.slurm.version,
        "toolchain": request.toolchain.name,
        "engine": request.engine.value,
        "gpu": request.gpu,
        "base_image": request.base_image,
        "buildcache": request.buildcache.value,
        "enable_hierarchy": request.enable_hierarchy,
        "compiler_version": request.compiler_version,
        "os_packages": request.os_packages.value,
        "spack_packages": request.spack_packages,
    }


def write_build_record(stored: Path, plan: BuildPlan, durations: dict[str, float], *, built_at: dt.datetime) -> None:
    """`<artifact>.build.json`: what the tarball must not hold (the time of the build, how long it took)."""
    record = {
        "build_id": plan.build_id,
        "artifact": stored.name,
        "request": request_record(plan),
        "built_at": built_at.replace(microsecond=0).isoformat(),
        "durations": durations,
    }
    write_text_atomically(sidecar(stored, BUILD_RECORD), json.dumps(record, indent=2) + "\n")


@dataclass(frozen=True)
class StoredArtifact:
    """One artifact of the store as `list` and `clean` see it."""

    path: Path
    build_id: str
    manifest: dict[str, Any]
    record: dict[str, Any]
    current: bool

    @property
    def built_at(self) -> str:
        return str(self.record.get("built_at") or "")

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    @property
    def verified(self) -> bool:
        """A passed report for exactly these bytes."""
        verified = self.manifest.get("verified") or {}
        return bool(verified.get("passed")) and verified.get("sha256") == _recorded_sha256(self.path)

    def signed(self, public_keys: list[Path]) -> bool:
        """A signature counts only if gpg accepts it with one of the public keys in builds/."""
        signature = sidecar(self.path, ".asc")
        if not signature.is_file():
            return False
        return any(verify_signature(self.path, signature, key)[0] for key in public_keys)

    def debug_symbols(self) -> dict[str, Any] | None:
        """The -debug companion beside the artifact: its name, size and whether it is signed."""
        recorded = self.manifest.get("debug_symbols")
        if not isinstance(recorded, dict):
            return None
        companion = self.path.with_name(debug_companion_name(self.path.name))
        if not companion.is_file():
            return None
        return {"name": companion.name, "size": companion.stat().st_size,
                "signed": sidecar(companion, ".asc").is_file()}  # fmt: skip

    def options(self) -> str:
        request = self.record.get("request") or {}
        manifest = self.manifest
        shown = [
            *(["gpu"] if manifest.get("gpu") else []),
            *([f"os-packages={manifest['os_packages']}"] if manifest.get("os_packages") else []),
            *([f"modules={manifest['spack_modules']}"] if manifest.get("spack_modules") else []),
            *([f"compiler={request['compiler_version']}"] if request.get("compiler_version") else []),
            *([f"base-image={request['base_image']}"] if request.get("base_image") else []),
        ]
        return " ".join(shown) or "-"

    def to_json(self, public_keys: list[Path]) -> dict[str, Any]:
        slurm = self.manifest.get("slurm") or {}
        return {
            "path": str(self.path),
            "name": self.path.name,
            "build_id": self.build_id,
            "slurm_version": slurm.get("version"),
            "toolchain": (self.manifest.get("toolchain") or {}).get("name"),
            "engine": self.manifest.get("engine"),
            "options": self.options(),
            "size": self.size,
            "debug_symbols": self.debug_symbols(),
            "verified": self.verified,
            "signed": self.signed(public_keys),
            "current": self.current,
            "built_at": self.built_at or None,
            "manifest": self.manifest,
        }


def _current_target(builds_dir: Path, name: str) -> Path | None:
    link = builds_dir / name
    if not link.is_symlink():
        return None
    target = (link.parent / os.readlink(link)).resolve()
    return target if target.is_file() else None


def stored_artifacts(builds_dir: Path) -> list[StoredArtifact]:
    """Every complete artifact in the store, by request name, newest first (dangling links are ignored)."""
    found = []
    for path in sorted(store_dir(builds_dir).glob(f"*/{ARTIFACT_PATTERN}")):
        if not path.is_file() or path.is_symlink():
            continue
        current = _current_target(builds_dir, path.name)
        found.append(
            StoredArtifact(
                path=path,
                build_id=path.parent.name,
                manifest=_read_json(sidecar(path, ".manifest.json")),
                record=_read_json(sidecar(path, BUILD_RECORD)),
                current=current is not None and current == path.resolve(),
            )
        )
    return sorted(found, key=lambda item: (item.path.name, item.built_at or "", item.build_id), reverse=True)


def public_keys(builds_dir: Path) -> list[Path]:
    return sorted(builds_dir.glob("*.pub.asc")) if builds_dir.is_dir() else []


def prune(builds_dir: Path, keep: int) -> list[Path]:
    """Remove all but the `keep` newest artifacts of each request; the one its name points at and the only one of a
    request always stay. Returns the directories removed."""
    if keep < 1:
        raise ConfigurationError(f"--keep {keep}: keep at least 1 artifact of each request")
    by_name: dict[str, list[StoredArtifact]] = {}
    for item in stored_artifacts(builds_dir):
        by_name.setdefault(item.path.name, []).append(item)
    removed = []
    for items in by_name.values():
        kept = [item for item in items if item.current][:1]
        for item in items:
            if len(kept) >= keep:
                break
            if item not in kept:
                kept.append(item)
        for item in items:
            if item not in kept:
                shutil.rmtree(item.path.parent)
                removed.append(item.path.parent)
    return removed
