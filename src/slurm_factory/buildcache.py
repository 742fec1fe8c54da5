"""What a local Spack binary mirror holds (Spack 1.x layout v3: `v3/manifests/spec/<name>/<name>-<version>-<hash>
.spec.manifest.json`, each naming its spec's blob under `blobs/<algorithm>/<xx>/<checksum>`) — read on the host,
so a missing compiler fails before any container starts."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

from slurm_factory.catalog.spack_pins import load_spack_pins
from slurm_factory.choices import Arch

SPEC_MANIFESTS = Path("v3", "manifests", "spec")
BLOBS = Path("blobs")
SPEC_MEDIA_TYPE = "application/vnd.spack.spec."
# A manifest is a few hundred bytes and a spec a few hundred KiB: anything far larger is not one.
MANIFEST_CAP = 1 << 20
SPEC_CAP = 64 << 20
_CLEARSIGNED = re.compile(
    r"^-----BEGIN PGP SIGNED MESSAGE-----\s+Hash:\s+\S+\s+(.+)-----BEGIN PGP SIGNATURE-----", re.MULTILINE | re.DOTALL
)
_HEX = re.compile(r"[0-9a-f]{16,128}")
_ALGORITHM = re.compile(r"[a-z0-9]{2,16}")


def cached_specs(mirror: Path, name: str, version: str, *, target: str | None = None) -> list[Path]:
    """The spec manifests of `name@version` in the mirror (any hash); with `target`, only those built for it (an
    arm64 build needs the aarch64 GCC, not the x86_64_v2 one beside it)."""
    directory = mirror / SPEC_MANIFESTS / name
    found = sorted(directory.glob(f"{name}-{version}-*.spec.manifest.json")) if directory.is_dir() else []
    if target is None:
        return found
    return [manifest for manifest in found if spec_target(mirror, manifest, name) == target]


def cached_gcc(mirror: Path, version: str, arch: Arch) -> list[Path]:
    """The manifests of GCC `version` built for `arch`'s Spack target (what `build-compiler --arch` pushes)."""
    return cached_specs(mirror, "gcc", version, target=load_spack_pins().target(arch.value))


def spec_target(mirror: Path, manifest: Path, name: str) -> str | None:
    """The target of package `name` in the spec the manifest names, or None when the entry cannot be read."""
    try:
        record = _spec_record(json.loads(_unsigned(manifest)))
        spec = json.loads(_spec_blob(mirror, record))
        node = next(node for node in spec["spec"]["nodes"] if node.get("name") == name)
        target = node["arch"]["target"]
        return str(target if isinstance(target, str) else target["name"])
    except (OSError, ValueError, KeyError, TypeError, StopIteration, EOFError):
        return None


def _unsigned(manifest: Path) -> str:
    """The manifest's JSON: clearsigned when the mirror is signed."""
    with manifest.open("rb") as stream:
        data = stream.read(MANIFEST_CAP + 1)
    if len(data) > MANIFEST_CAP:
        raise ValueError(f"{manifest} is over {MANIFEST_CAP} bytes")
    text = data.decode()
    signed = _CLEARSIGNED.search(text)
    return signed.group(1) if signed else text


def _spec_record(manifest: Any) -> dict[str, Any]:
    record: dict[str, Any] = next(
        item for item in manifest["data"] if str(item["mediaType"]).startswith(SPEC_MEDIA_TYPE)
    )
    if not _HEX.fullmatch(str(record["checksum"])) or not _ALGORITHM.fullmatch(str(record["checksumAlgorithm"])):
        raise ValueError("not a blob checksum")
    return record


def _spec_blob(mirror: Path, record: dict[str, Any]) -> str:
    checksum = str(record["checksum"])
    path = mirror / BLOBS / str(record["checksumAlgorithm"]) / checksum[:2] / checksum
    with path.open("rb") as raw:
        data = (gzip.GzipFile(fileobj=raw) if record.get("compression") == "gzip" else raw).read(SPEC_CAP + 1)
    if len(data) > SPEC_CAP:
        raise ValueError(f"{path} is over {SPEC_CAP} bytes")
    return data.decode()
