"""Publishing tarball artifacts: tarball, `.asc`, `.sha256` and manifest into `<mirror>/<toolchain>/<series>/`.

A mirror is a local directory (`file://`) or an S3 prefix (`s3://`); both are one `MirrorStore`. Every file lands
atomically (a local file under a temporary name, then renamed; an S3 object by one PUT), the signer's public key
under `keys/`, and `index.json` at the mirror's root lists what is there. Publishing the same artifact twice
changes nothing: a file whose sha256 is already there is not written again. Two publishers at once lose no index
entry: the index is replaced only if it is still the version that was read (an ETag condition on S3, a lock on
the directory locally), else it is read and merged again.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from slurm_factory.artifact import Artifact, atomic_writer, write_text_atomically
from slurm_factory.exceptions import ConfigurationError, SlurmFactoryError
from slurm_factory.request import file_url_path
from slurm_factory.s3 import S3Access, S3Error, S3Url
from slurm_factory.source import sha256_of

INDEX_NAME = "index.json"
INDEX_SCHEMA = 1
# S3 object metadata that records a published file's sha256 (so a republish can compare without downloading).
SHA256_METADATA = "sha256"


@dataclass
class Publication:
    """Where an artifact and its companions were published (paths or s3:// URLs)."""

    root: str
    files: list[str] = field(default_factory=list)
    public_key: str | None = None
    index: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"root": self.root, "files": self.files, "public_key": self.public_key, "index": self.index}


class MirrorStore(Protocol):
    """Where published files go, addressed by paths relative to the mirror's root."""

    root: str

    def location(self, relative: str) -> str: ...

    def holds(self, relative: str, sha256: str, size: int) -> bool: ...

    def put_file(self, relative: str, source: Path, sha256: str) -> None: ...

    def read_versioned(self, relative: str) -> tuple[bytes | None, str | None]:
        """The content and a version token (None when absent) for `put_text_if`."""
        ...

    def put_text_if(self, relative: str, text: str, version: str | None) -> bool:
        """Write only if the file is still at `version` (absent for None); False when someone else wrote it."""
        ...


INDEX_ATTEMPTS = 8


class PublishError(SlurmFactoryError):
    """A publish could not complete after the build (exit 1)."""


def mirror_directory(publish_url: str) -> Path:
    """The local directory of a `file://` URL."""
    directory = file_url_path(publish_url)
    if directory is None:
        raise ConfigurationError(f"--publish-url {publish_url}: not a file:// URL")
    return directory


class LocalMirror:
    """A mirror in a local directory; files are renamed into place, world-readable."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.root = str(directory)

    def location(self, relative: str) -> str:
        return str(self.directory / relative)

    def holds(self, relative: str, sha256: str, size: int) -> bool:
        target = self.directory / relative
        return target.is_file() and target.stat().st_size == size and sha256_of(target) == sha256

    def put_file(self, relative: str, source: Path, sha256: str) -> None:
        with atomic_writer(self.directory / relative) as stream, source.open("rb") as data:
            shutil.copyfileobj(data, stream)

    def read_versioned(self, relative: str) -> tuple[bytes | None, str | None]:
        path = self.directory / relative
        try:
            with path.open("rb") as stream:
                return stream.read(), self._version(os.fstat(stream.fileno()))
        except FileNotFoundError:
            return None, None

    @staticmethod
    def _version(status: os.stat_result) -> str:
        return f"{status.st_ino}:{status.st_mtime_ns}:{status.st_size}"

    def put_text_if(self, relative: str, text: str, version: str | None) -> bool:
        path = self.directory / relative
        self.directory.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.directory, os.O_RDONLY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)  # publishers on this host, or sharing this NFS/Lustre directory
            current = self._version(path.stat()) if path.exists() else None
            if current != version:
                return False
            write_text_atomically(path, text)
            return True
        finally:
            os.close(descriptor)  # releases the lock


class _ConditionFailed(Exception):
    """The object is no longer at the version the condition named."""


class _ConditionalPutUnsupported(Exception):
    """The store does not implement conditional PUTs."""


class S3Mirror:
    """A mirror under an S3 prefix. One PUT makes an object appear whole; its sha256 travels as object metadata."""

    def __init__(self, url: S3Url, access: S3Access) -> None:
        self.url = url
        self.root = url.url()
        self._client = access.client()

    def location(self, relative: str) -> str:
        return self.url.url(relative)

    def _failure(self, action: str, relative: str, error: Exception) -> S3Error:
        return S3Error(f"{action} {self.location(relative)} failed: {error}")

    def holds(self, relative: str, sha256: str, size: int) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            head = self._client.head_object(Bucket=self.url.bucket, Key=self.url.key(relative))
        except ClientError as error:
            if str(error.response.get("Error", {}).get("Code")) in ("NoSuchKey", "404", "NotFound"):
                return False
            raise self._failure("checking", relative, error) from None
        except BotoCoreError as error:
            raise self._failure("checking", relative, error) from None
        metadata = head.get("Metadata", {})
        return bool(head.get("ContentLength") == size and metadata.get(SHA256_METADATA) == sha256)

    def _put(self, relative: str, body: bytes | Any, sha256: str, *, content_type: str, **condition: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.put_object(
                Bucket=self.url.bucket,
                Key=self.url.key(relative),
                Body=body,
                ContentType=content_type,
                Metadata={SHA256_METADATA: sha256},
                **condition,
            )
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code"))
            if condition and code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                raise _ConditionFailed from None
            if condition and code in ("NotImplemented", "501"):
                raise _ConditionalPutUnsupported from None
            raise self._failure("uploading", relative, error) from None
        except BotoCoreError as error:
            raise self._failure("uploading", relative, error) from None

    def put_file(self, relative: str, source: Path, sha256: str) -> None:
        with source.open("rb") as body:
            self._put(relative, body, sha256, content_type=_content_type(source.name))

    def read_versioned(self, relative: str) -> tuple[bytes | None, str | None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.get_object(Bucket=self.url.bucket, Key=self.url.key(relative))
            return bytes(response["Body"].read()), str(response["ETag"])
        except ClientError as error:
            if str(error.response.get("Error", {}).get("Code")) in ("NoSuchKey", "404"):
                return None, None
            raise self._failure("reading", relative, error) from None
        except BotoCoreError as error:
            raise self._failure("reading", relative, error) from None

    def put_text_if(self, relative: str, text: str, version: str | None) -> bool:
        """A conditional PUT: `If-Match: <etag>` to replace, `If-None-Match: *` to create."""

        data = text.encode()
        digest, content_type = hashlib.sha256(data).hexdigest(), _content_type(relative)
        condition = {"IfMatch": version} if version is not None else {"IfNoneMatch": "*"}
        try:
            self._put(relative, data, digest, content_type=content_type, **condition)
        except _ConditionalPutUnsupported:
            # An S3-compatible store without conditional writes: the last writer wins, as it always did there.
            self._put(relative, data, digest, content_type=content_type)
        except _ConditionFailed:
            return False
        return True


def _content_type(name: str) -> str:
    if name.endswith(".tar.gz"):
        return "application/gzip"
    if name.endswith(".json"):
        return "application/json"
    return "text/plain"


def open_mirror(publish_url: str, s3: S3Access | None = None) -> MirrorStore:
    """The store behind a `file://` or `s3://` publish URL."""
    scheme = urlparse(publish_url).scheme
    if scheme == "file":
        return LocalMirror(mirror_directory(publish_url))
    if scheme == "s3":
        if s3 is None:
            raise ConfigurationError(f"--publish-url {publish_url}: publishing to S3 needs S3 credentials")
        return S3Mirror(S3Url.parse(publish_url), s3)
    raise ConfigurationError(f"--publish-url {publish_url}: tarballs are published to file:// or s3:// mirrors only")


def _read_index(store: MirrorStore) -> tuple[dict[str, Any], str | None]:
    raw, version = store.read_versioned(INDEX_NAME)
    where = store.location(INDEX_NAME)
    if raw is None:
        return {"schema": INDEX_SCHEMA, "artifacts": []}, None
    try:
        loaded = json.loads(raw)
    except ValueError:
        raise ConfigurationError(f"{where} is not valid JSON; refusing to overwrite a mirror index") from None
    if not isinstance(loaded, dict) or not isinstance(loaded.get("artifacts"), list):
        raise ConfigurationError(f"{where} is not a slurm-factory mirror index")
    return loaded, version


def _index_entry(
    artifact: Artifact, relative: str, signature: str | None, *, key: str | None, debug_symbols: str | None
) -> dict[str, Any]:
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
        "debug_symbols": debug_symbols,
        "published_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
    }


def _without_time(entry: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in entry.items() if name != "published_at"}


def _with_entry(index: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any] | None:
    """The index with `entry` in it, or None when it already says exactly that."""
    previous = next((e for e in index["artifacts"] if e.get("path") == entry["path"]), None)
    if previous is not None and _without_time(previous) == _without_time(entry):
        return None
    others = [existing for existing in index["artifacts"] if existing.get("path") != entry["path"]]
    return {**index, "artifacts": sorted([*others, entry], key=lambda e: str(e["path"]))}


def _update_index(store: MirrorStore, entry: dict[str, Any]) -> str:
    """Add the entry to the index as it is now; if another publisher replaced it meanwhile, merge again."""
    for _ in range(INDEX_ATTEMPTS):
        index, version = _read_index(store)
        updated = _with_entry(index, entry)
        if updated is None or store.put_text_if(INDEX_NAME, json.dumps(updated, indent=2) + "\n", version):
            return store.location(INDEX_NAME)
    raise PublishError(
        f"{store.location(INDEX_NAME)} changed {INDEX_ATTEMPTS} times while this publish merged into it",
        hint="other publishers are writing to this mirror; publish again",
    )


def _put_unless_there(store: MirrorStore, relative: str, source: Path) -> str:
    digest = sha256_of(source)
    if not store.holds(relative, digest, source.stat().st_size):
        store.put_file(relative, source, digest)
    return store.location(relative)


def publish_artifact(
    artifact: Artifact,
    signature: Path | None,
    public_key: Path | None,
    *,
    publish_url: str,
    s3: S3Access | None = None,
    companions: Sequence[Path | None] = (),
) -> Publication:
    """Publish an artifact and its companions (the sidecars, the signature, and e.g. the SBOM and its signature)
    into a file:// or s3:// mirror."""
    store = open_mirror(publish_url, s3)
    _read_index(store)  # a mirror whose index we cannot update gets nothing at all
    manifest = artifact.manifest
    directory = f"{manifest['toolchain']['name']}/{manifest['slurm']['series']}"
    files = [artifact.path, artifact.checksum_path, artifact.manifest_path, *([signature] if signature else [])]
    files += [path for path in companions if path is not None and path.is_file()]
    publication = Publication(root=store.root)
    publication.files = [_put_unless_there(store, f"{directory}/{path.name}", path) for path in files]
    key_relative = None
    if public_key is not None:
        key_relative = f"keys/{public_key.name}"
        publication.public_key = _put_unless_there(store, key_relative, public_key)
    signature_relative = f"{directory}/{signature.name}" if signature else None
    companion = (manifest.get("debug_symbols") or {}).get("artifact")
    published_names = {path.name for path in files}
    debug_relative = f"{directory}/{companion}" if companion in published_names else None
    entry = _index_entry(
        artifact,
        f"{directory}/{artifact.path.name}",
        signature_relative,
        key=key_relative,
        debug_symbols=debug_relative,
    )
    publication.index = _update_index(store, entry)
    return publication
