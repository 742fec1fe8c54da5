"""Entries of a Spack 1.x (layout v3) binary mirror as `spack buildcache push` writes them: a manifest under
`v3/manifests/spec/<name>/`, clearsigned when signed, naming the gzip-compressed spec JSON under `blobs/sha256/`
(beside `v3/`, not in it)."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

SPEC_MEDIA_TYPE = "application/vnd.spack.spec.v5+json"
TARBALL_MEDIA_TYPE = "application/vnd.spack.install.v2.tar+gzip"


def _blob(mirror: Path, data: bytes) -> str:
    checksum = hashlib.sha256(data).hexdigest()
    path = mirror / "blobs" / "sha256" / checksum[:2] / checksum
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return checksum


def write_spec_entry(mirror: Path, name: str, version: str, target: str, *, signed: bool = False) -> Path:
    """One package built for `target` (a plain name like `aarch64`, or Spack's dict form for x86_64_v2)."""
    dag_hash = hashlib.sha256(f"{name}{version}{target}".encode()).hexdigest()[:32]
    node_target: object = target if target == "aarch64" else {"name": target, "vendor": "generic"}
    spec = {
        "spec": {
            "_meta": {"version": 5},
            "nodes": [
                {"name": name, "version": version, "hash": dag_hash,
                 "arch": {"platform": "linux", "platform_os": "debian13", "target": node_target}},
                {"name": "gcc-runtime", "version": version, "arch": {"target": "x86_64"}},
            ],
        }
    }  # fmt: skip
    spec_blob = gzip.compress(json.dumps(spec).encode())
    records = [
        {"contentLength": 3, "mediaType": TARBALL_MEDIA_TYPE, "compression": "gzip", "checksumAlgorithm": "sha256",
         "checksum": _blob(mirror, b"tar")},
        {"contentLength": len(spec_blob), "mediaType": SPEC_MEDIA_TYPE, "compression": "gzip",
         "checksumAlgorithm": "sha256", "checksum": _blob(mirror, spec_blob)},
    ]  # fmt: skip
    text = json.dumps({"version": 3, "data": records}, indent=0)
    if signed:
        text = (
            f"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n{text}\n-----BEGIN PGP SIGNATURE-----\n\n"
            "iHUEARYKAB0WIQ==\n-----END PGP SIGNATURE-----\n"
        )
    manifest = mirror / "v3" / "manifests" / "spec" / name / f"{name}-{version}-{dag_hash}.spec.manifest.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(text)
    return manifest
