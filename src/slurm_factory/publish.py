"""Publishing native artifacts: tarball, `.asc`, `.sha256` and manifest into `<mirror>/<toolchain>/<series>/`.

Every file lands atomically (temporary name, then rename), the signer's public key under `keys/`, and `index.json`
at the mirror's root lists what is there. Publishing the same artifact twice changes nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from slurm_factory.artifact import Artifact, write_text_atomically
from slurm_factory.exceptions import ConfigurationError
from slurm_factory.source import sha256_of

INDEX_NAME = "index.json"
INDEX_SCHEMA = 1


@dataclass
class Publication:
    """Where an artifact and its companions were published."""

    root: Path
    files: list[Path] = field(default_factory=list)
    public_key: Path | None = None
    index: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "files": [str(path) for path in self.files],
            "public_key": str(self.public_key) if self.public_key else None,
            "index": str(self.index) if self.index else None,
        }


def mirror_directory(publish_url: str) -> Path:
    """The local directory of a `file://` URL (the only kind the native engine publishes to)."""
    parsed = urlparse(publish_url)
    if parsed.scheme != "file":
        raise ConfigurationError(f"--publish-url {publish_url}: the native engine publishes to file:// mirrors only")
    return Path(unquote(parsed.path))


def _same_file(source: Path, target: Path) -> bool:
    return (
        target.is_file() and target.stat().st_size == source.stat().st_size and sha256_of(target) == sha256_of(source)
    )


def _copy_atomically(source: Path, directory: Path) -> Path:
    target = directory / source.name
    if _same_file(source, target):
        return target
    descriptor, temporary_name = tempfile.mkstemp(prefix=f".{source.name}.", dir=directory)
    os.close(descriptor)
    temporary = Path(temporary_name)
    try:
        shutil.copyfile(source, temporary)
        temporary.chmod(0o644)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


def _read_index(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"schema": INDEX_SCHEMA, "artifacts": []}
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise ConfigurationError(f"{path} is not valid JSON; refusing to overwrite a mirror index") from None
    if not isinstance(loaded, dict) or not isinstance(loaded.get("artifacts"), list):
        raise ConfigurationError(f"{path} is not a slurm-factory mirror index")
    return loaded


def _index_entry(artifact: Artifact, relative: str, signature: str | None, key: str | None) -> dict[str, Any]:
    manifest = artifact.manifest
    return {
        "path": relative,
        "sha256": artifact.sha256,
        "size": artifact.size,
        "slurm": manifest["slurm"]["version"],
        "toolchain": manifest["toolchain"]["name"],
        "gpu": manifest["gpu"],
        "engine": manifest["engine"],
        "signature": signature,
        "public_key": key,
        "published_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
    }


def _update_index(root: Path, entry: dict[str, Any]) -> Path:
    path = root / INDEX_NAME
    index = _read_index(path)
    entries = [existing for existing in index["artifacts"] if existing.get("path") != entry["path"]]
    previous = next((e for e in index["artifacts"] if e.get("path") == entry["path"]), None)
    if previous is not None and {k: v for k, v in previous.items() if k != "published_at"} == {
        k: v for k, v in entry.items() if k != "published_at"
    }:
        return path  # the same artifact again: the index already says so
    index["artifacts"] = sorted([*entries, entry], key=lambda e: str(e["path"]))
    write_text_atomically(path, json.dumps(index, indent=2) + "\n")
    return path


def publish_artifact(
    artifact: Artifact, signature: Path | None, public_key: Path | None, publish_url: str
) -> Publication:
    """Publish a native artifact and its companions into a file:// mirror."""
    root = mirror_directory(publish_url)
    _read_index(root / INDEX_NAME)  # a mirror whose index we cannot update gets nothing at all
    manifest = artifact.manifest
    directory = root / manifest["toolchain"]["name"] / manifest["slurm"]["series"]
    directory.mkdir(parents=True, exist_ok=True)
    publication = Publication(root=root)
    companions = [artifact.path, artifact.checksum_path, artifact.manifest_path, *([signature] if signature else [])]
    publication.files = [_copy_atomically(path, directory) for path in companions]
    key_relative = None
    if public_key is not None:
        keys = root / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        publication.public_key = _copy_atomically(public_key, keys)
        key_relative = str(publication.public_key.relative_to(root))
    relative = str((directory / artifact.path.name).relative_to(root))
    signature_relative = str((directory / signature.name).relative_to(root)) if signature else None
    publication.index = _update_index(root, _index_entry(artifact, relative, signature_relative, key_relative))
    return publication
