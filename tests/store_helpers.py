"""Artifacts laid out in a store the way a build leaves them, for tests of `list`, `clean --builds` and reuse."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from slurm_factory import store

ARTIFACT_NAME = "slurm-24.11-trixie-software.tar.gz"


def stored_artifact(
    builds: Path,
    build_id: str,
    *,
    name: str = ARTIFACT_NAME,
    version: str = "24.11.5",
    built_at: str = "2026-01-02T03:04:05+00:00",
    data: bytes | None = None,
    manifest: dict[str, Any] | None = None,
    link: bool = True,
) -> Path:
    """A tarball with its `.sha256`, `.manifest.json` and `.build.json` in `builds/by-id/<build_id>/`."""
    directory = store.store_dir(builds) / build_id
    directory.mkdir(parents=True)
    path = directory / name
    path.write_bytes(data if data is not None else f"tarball {build_id}".encode() * 1000)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (directory / f"{name}.sha256").write_text(f"{digest}  {name}\n")
    recorded = manifest or {
        "slurm": {"version": version, "series": version.rsplit(".", 1)[0]},
        "toolchain": {"name": "trixie", "os": "Debian 13"},
        "engine": "native",
        "gpu": False,
        "build_id": build_id,
    }
    (directory / f"{name}.manifest.json").write_text(json.dumps(recorded))
    record = {"build_id": build_id, "built_at": built_at, "request": {"slurm_version": version}}
    (directory / f"{name}.build.json").write_text(json.dumps(record))
    if link:
        store.link_contract_names(builds, path)
    return path
