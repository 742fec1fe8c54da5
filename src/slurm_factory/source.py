"""The Slurm source tarball: fetched or copied into the source mirror, and checked against the release's sha256.

This happens on the host before any container starts, so a tampered or wrong tarball never reaches a compiler.
The mirror uses Spack's layout, so the same cache serves both engines and offline rebuilds.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlparse

from slurm_factory.catalog import SlurmRelease
from slurm_factory.exceptions import BuildError, SourceChecksumError, quoted
from slurm_factory.request import without_credentials

_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def check_release_checksum(release: SlurmRelease, actual: str, origin: str) -> None:
    """A tarball that is not the release's exact archive is refused before anything reads it further."""
    if actual != release.sha256:
        raise SourceChecksumError(
            f"--slurm-source {quoted(without_credentials(origin))}: sha256 {actual} does not match Slurm "
            f"{release.version} ({release.sha256}); refusing to build from it",
            hint=f"use the unmodified SchedMD archive {release.url}",
        )


def _download(url: str, destination: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response, destination.open("wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise BuildError(
            f"cannot download the Slurm source from {without_credentials(url)}: {error}",
            hint="on an air-gapped machine pass --slurm-source PATH with the release tarball",
        ) from None


def _fetch_into(origin: str, destination: Path) -> None:
    parsed = urlparse(origin)
    if parsed.scheme in ("http", "https"):
        _download(origin, destination)
    else:
        shutil.copyfile(unquote(parsed.path) if parsed.scheme == "file" else origin, destination)


def _cached(release: SlurmRelease, cache_path: Path) -> bool:
    return cache_path.is_file() and sha256_of(cache_path) == release.sha256


def needs_download(release: SlurmRelease, cache_path: Path, origin: str | None) -> bool:
    """Whether `ensure_source` will download (an http(s) origin, or the default URL with nothing cached)."""
    if origin is None:
        return not _cached(release, cache_path)
    return urlparse(origin).scheme in ("http", "https")


def ensure_source(release: SlurmRelease, cache_path: Path, origin: str | None) -> Path:
    """Make `cache_path` hold the release's verified tarball, taking it from `origin` (path or URL) or the default
    SchedMD URL. A cached file that matches is reused; anything that does not match is rejected, never cached."""
    if origin is None and _cached(release, cache_path):
        return cache_path
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    source = origin or release.url
    descriptor, temporary_name = tempfile.mkstemp(prefix=".incoming-", dir=cache_path.parent)
    os.close(descriptor)
    temporary = Path(temporary_name)
    try:
        _fetch_into(source, temporary)
        check_release_checksum(release, sha256_of(temporary), source)
        temporary.chmod(0o644)
        os.replace(temporary, cache_path)
    finally:
        temporary.unlink(missing_ok=True)
    return cache_path
