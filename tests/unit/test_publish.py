"""Publishing a native artifact into a file:// mirror: the documented layout, an index that lists it, atomic and
idempotent writes, and refusals that leave the mirror alone."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from slurm_factory.artifact import Artifact, manifest_text
from slurm_factory.exceptions import EXIT_USAGE, ConfigurationError
from slurm_factory.publish import (
    INDEX_NAME,
    LocalMirror,
    PublishError,
    S3Mirror,
    mirror_directory,
    publish_artifact,
)
from slurm_factory.s3 import S3Access, S3Error
from tests.s3server import S3Server

KEY_NAME = "0123456789ABCDEF.pub.asc"
OLD_MTIME_NS = 1_000_000_000 * 1_000_000_000  # 2001-09-09: no publish in this run can produce it


@dataclass(frozen=True)
class Built:
    artifact: Artifact
    signature: Path
    public_key: Path


def _manifest(version: str, series: str) -> dict[str, Any]:
    return {
        "schema": 1,
        "artifact": f"slurm-{series}-trixie-software.tar.gz",
        "slurm": {"version": version, "series": series},
        "toolchain": {"name": "trixie"},
        "gpu": False,
        "engine": "native",
    }


def _make_artifact(builds: Path, version: str = "24.11.5", series: str = "24.11", payload: bytes = b"") -> Built:
    """A real small tarball in `builds/` with its `.sha256`, `.manifest.json` and `.asc` sidecars, and a key file."""
    builds.mkdir(parents=True, exist_ok=True)
    manifest = _manifest(version, series)
    path = builds / manifest["artifact"]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        content = payload or f"Slurm {version} for trixie\n".encode()
        info = tarfile.TarInfo(f"slurm-{version}-trixie/share/README")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    path.write_bytes(buffer.getvalue())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    artifact = Artifact(path, digest, path.stat().st_size, manifest)
    artifact.checksum_path.write_text(f"{digest}  {path.name}\n")
    artifact.manifest_path.write_text(manifest_text(manifest))
    signature = path.with_name(path.name + ".asc")
    signature.write_text(f"-----BEGIN PGP SIGNATURE-----\n\nfake signature of {digest}\n-----END PGP SIGNATURE-----\n")
    public_key = builds / KEY_NAME
    public_key.write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nfake\n-----END PGP PUBLIC KEY BLOCK-----\n")
    return Built(artifact, signature, public_key)


def _publish(built: Built, mirror: Path) -> None:
    publish_artifact(built.artifact, built.signature, built.public_key, publish_url=mirror.as_uri())


def _index(mirror: Path) -> dict[str, Any]:
    loaded = json.loads((mirror / INDEX_NAME).read_text())
    assert isinstance(loaded, dict)
    return loaded


def _snapshot(mirror: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file in the mirror: (bytes, mtime in ns, inode)."""
    return {
        str(path.relative_to(mirror)): (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_ino)
        for path in sorted(mirror.rglob("*"))
        if path.is_file()
    }


def _age(mirror: Path) -> None:
    """Give every published file an old mtime, so any rewrite shows even within one clock tick."""
    for path in mirror.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(OLD_MTIME_NS, OLD_MTIME_NS))


def _hidden(mirror: Path) -> list[Path]:
    return [path for path in mirror.rglob("*") if path.name.startswith(".") or path.name.endswith(".partial")]


@pytest.fixture
def built(tmp_path: Path) -> Built:
    return _make_artifact(tmp_path / "builds")


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    return tmp_path / "mirror"


def test_publish_writes_the_artifact_its_sidecars_and_the_key_in_the_mirror_layout(built: Built, mirror: Path) -> None:
    publication = publish_artifact(built.artifact, built.signature, built.public_key, publish_url=mirror.as_uri())
    series = mirror / "trixie" / "24.11"
    name = built.artifact.path.name
    expected = {
        series / name: built.artifact.path,
        series / f"{name}.sha256": built.artifact.checksum_path,
        series / f"{name}.manifest.json": built.artifact.manifest_path,
        series / f"{name}.asc": built.signature,
        mirror / "keys" / KEY_NAME: built.public_key,
    }
    for published, source in expected.items():
        assert published.is_file(), published
        assert published.read_bytes() == source.read_bytes(), published
    assert sorted(publication.files) == sorted(str(p) for p in expected if p.parent == series)
    assert publication.public_key == str(mirror / "keys" / KEY_NAME)
    assert publication.index == str(mirror / INDEX_NAME)
    assert publication.root == str(mirror)
    assert json.loads(json.dumps(publication.to_json()))["index"] == str(mirror / INDEX_NAME)
    assert hashlib.sha256((series / name).read_bytes()).hexdigest() == built.artifact.sha256


def test_index_lists_the_artifact_with_sha256_signature_and_public_key(built: Built, mirror: Path) -> None:
    _publish(built, mirror)
    index = _index(mirror)
    assert index["schema"] == 1
    [entry] = index["artifacts"]
    name = built.artifact.path.name
    assert entry["path"] == f"trixie/24.11/{name}"
    assert entry["sha256"] == built.artifact.sha256
    assert entry["size"] == built.artifact.size
    assert entry["signature"] == f"trixie/24.11/{name}.asc"
    assert entry["public_key"] == f"keys/{KEY_NAME}"
    assert (entry["slurm"], entry["toolchain"], entry["gpu"], entry["engine"]) == ("24.11.5", "trixie", False, "native")
    for relative in (entry["path"], entry["signature"], entry["public_key"]):
        assert (mirror / relative).is_file(), relative


def test_publishing_the_same_artifact_twice_changes_no_byte_mtime_or_inode(built: Built, mirror: Path) -> None:
    _publish(built, mirror)
    _age(mirror)
    before = _snapshot(mirror)
    index_before = (mirror / INDEX_NAME).read_bytes()
    _publish(built, mirror)
    assert _snapshot(mirror) == before
    assert (mirror / INDEX_NAME).read_bytes() == index_before
    assert _hidden(mirror) == []


def test_publishing_another_series_adds_a_second_index_entry_and_keeps_the_first(tmp_path: Path, mirror: Path) -> None:
    first = _make_artifact(tmp_path / "builds")
    _publish(first, mirror)
    [first_entry] = _index(mirror)["artifacts"]
    _age(mirror)
    first_files = {k: v for k, v in _snapshot(mirror).items() if k.startswith("trixie/24.11/")}

    second = _make_artifact(tmp_path / "builds", version="25.11.2", series="25.11")
    _publish(second, mirror)

    entries = _index(mirror)["artifacts"]
    assert [entry["path"] for entry in entries] == [
        "trixie/24.11/slurm-24.11-trixie-software.tar.gz",
        "trixie/25.11/slurm-25.11-trixie-software.tar.gz",
    ]
    assert entries[0] == first_entry
    assert entries[1]["sha256"] == second.artifact.sha256
    assert entries[1]["slurm"] == "25.11.2"
    assert entries[1]["signature"] == "trixie/25.11/slurm-25.11-trixie-software.tar.gz.asc"
    assert (mirror / "trixie" / "25.11" / "slurm-25.11-trixie-software.tar.gz").read_bytes() == (
        second.artifact.path.read_bytes()
    )
    after = _snapshot(mirror)
    assert {k: v for k, v in after.items() if k.startswith("trixie/24.11/")} == first_files
    assert _hidden(mirror) == []


def test_republishing_a_rebuilt_artifact_replaces_its_files_and_its_single_index_entry(
    tmp_path: Path, mirror: Path
) -> None:
    _publish(_make_artifact(tmp_path / "first"), mirror)
    rebuilt = _make_artifact(tmp_path / "second", payload=b"a different build of the same release\n")
    _publish(rebuilt, mirror)
    [entry] = _index(mirror)["artifacts"]
    assert entry["sha256"] == rebuilt.artifact.sha256
    published = mirror / entry["path"]
    assert published.read_bytes() == rebuilt.artifact.path.read_bytes()
    assert (mirror / entry["signature"]).read_bytes() == rebuilt.signature.read_bytes()
    assert _hidden(mirror) == []


def test_publish_leaves_no_temporary_files_in_the_mirror(tmp_path: Path, mirror: Path) -> None:
    _publish(_make_artifact(tmp_path / "builds"), mirror)
    _publish(_make_artifact(tmp_path / "builds", version="23.11.10", series="23.11"), mirror)
    _publish(_make_artifact(tmp_path / "builds", payload=b"rebuilt\n"), mirror)
    assert _hidden(mirror) == []
    assert {p.name for p in mirror.iterdir()} == {"trixie", "keys", INDEX_NAME}


def test_published_files_are_world_readable(built: Built, mirror: Path) -> None:
    built.artifact.path.chmod(0o600)
    _publish(built, mirror)
    for path in mirror.rglob("*"):
        if path.is_file():
            assert path.stat().st_mode & 0o444 == 0o444, path


def test_publish_without_signature_or_key_indexes_them_as_absent(built: Built, mirror: Path) -> None:
    publication = publish_artifact(built.artifact, None, None, publish_url=mirror.as_uri())
    [entry] = _index(mirror)["artifacts"]
    assert entry["signature"] is None and entry["public_key"] is None
    assert publication.public_key is None
    assert not (mirror / "keys").exists()
    assert not (mirror / "trixie" / "24.11" / built.signature.name).exists()


@pytest.mark.parametrize("url", ["s3://bucket/mirror", "https://mirror.example.org/slurm"])
def test_publish_to_a_non_file_url_is_a_configuration_error_and_writes_nothing(
    built: Built, tmp_path: Path, url: str
) -> None:
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(ConfigurationError) as raised:
        publish_artifact(built.artifact, built.signature, built.public_key, publish_url=url)
    assert raised.value.exit_code == EXIT_USAGE
    assert "--publish-url" in raised.value.message and url in raised.value.message
    assert sorted(tmp_path.rglob("*")) == before
    with pytest.raises(ConfigurationError):
        mirror_directory(url)


def test_mirror_directory_of_a_file_url_is_its_path(tmp_path: Path) -> None:
    assert mirror_directory((tmp_path / "m").as_uri()) == tmp_path / "m"


@pytest.mark.parametrize(
    "corrupt",
    [b"{ this is not json", b"[]\n", b'{"schema": 1, "artifacts": "nope"}\n'],
    ids=["invalid-json", "a-list", "artifacts-not-a-list"],
)
def test_corrupt_index_is_refused_and_left_untouched(built: Built, mirror: Path, corrupt: bytes) -> None:
    mirror.mkdir()
    index = mirror / INDEX_NAME
    index.write_bytes(corrupt)
    os.utime(index, ns=(OLD_MTIME_NS, OLD_MTIME_NS))
    with pytest.raises(ConfigurationError) as raised:
        _publish(built, mirror)
    assert raised.value.exit_code == EXIT_USAGE
    assert str(index) in raised.value.message
    assert index.read_bytes() == corrupt
    assert index.stat().st_mtime_ns == OLD_MTIME_NS
    assert _hidden(mirror) == []


def test_publish_to_the_file_url_of_a_directory_with_a_space_lands_in_that_directory(
    built: Built, tmp_path: Path
) -> None:
    mirror = tmp_path / "my mirror"
    _publish(built, mirror)
    assert (mirror / INDEX_NAME).is_file()
    assert not (tmp_path / "my%20mirror").exists()


# --- s3:// mirrors, against a real S3 endpoint (moto's server, signatures checked) ----------------------------------


def test_publish_to_s3_uploads_the_documented_layout_with_sha256_metadata(
    built: Built, s3_server: S3Server, s3_access: S3Access
) -> None:
    bucket = s3_server.new_bucket()
    publication = publish_artifact(
        built.artifact, built.signature, built.public_key, publish_url=f"s3://{bucket}/site", s3=s3_access
    )
    name = built.artifact.path.name
    objects = s3_server.objects(bucket)
    expected = {
        f"site/trixie/24.11/{name}": built.artifact.path.read_bytes(),
        f"site/trixie/24.11/{name}.sha256": built.artifact.checksum_path.read_bytes(),
        f"site/trixie/24.11/{name}.manifest.json": built.artifact.manifest_path.read_bytes(),
        f"site/trixie/24.11/{name}.asc": built.signature.read_bytes(),
        f"site/keys/{KEY_NAME}": built.public_key.read_bytes(),
    }
    assert {key: objects[key] for key in expected} == expected
    assert set(objects) == {*expected, "site/index.json"}
    [entry] = json.loads(objects["site/index.json"])["artifacts"]
    assert entry["path"] == f"trixie/24.11/{name}" and entry["sha256"] == built.artifact.sha256
    assert entry["public_key"] == f"keys/{KEY_NAME}"
    head = s3_server.client().head_object(Bucket=bucket, Key=f"site/trixie/24.11/{name}")
    assert head["Metadata"] == {"sha256": built.artifact.sha256}
    assert publication.root == f"s3://{bucket}/site"
    assert publication.index == f"s3://{bucket}/site/index.json"
    assert f"s3://{bucket}/site/trixie/24.11/{name}" in publication.files


def test_publishing_the_same_artifact_to_s3_twice_uploads_nothing_the_second_time(
    built: Built, s3_server: S3Server, s3_access: S3Access, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_server.new_bucket()
    url = f"s3://{bucket}"
    publish_artifact(built.artifact, built.signature, built.public_key, publish_url=url, s3=s3_access)
    before = s3_server.objects(bucket)
    uploads: list[str] = []
    real_put = S3Mirror._put

    def counting_put(self: S3Mirror, relative: str, *args: Any) -> None:
        uploads.append(relative)
        real_put(self, relative, *args)

    monkeypatch.setattr(S3Mirror, "_put", counting_put)
    publish_artifact(built.artifact, built.signature, built.public_key, publish_url=url, s3=s3_access)
    assert uploads == []
    assert s3_server.objects(bucket) == before


def test_a_rebuilt_artifact_replaces_its_s3_objects_and_its_single_index_entry(
    tmp_path: Path, s3_server: S3Server, s3_access: S3Access
) -> None:
    bucket = s3_server.new_bucket()
    first = _make_artifact(tmp_path / "one", payload=b"first build\n")
    second = _make_artifact(tmp_path / "two", payload=b"second build, other bytes\n")
    for built in (first, second):
        publish_artifact(built.artifact, built.signature, built.public_key, publish_url=f"s3://{bucket}", s3=s3_access)
    objects = s3_server.objects(bucket)
    assert objects[f"trixie/24.11/{second.artifact.path.name}"] == second.artifact.path.read_bytes()
    [entry] = json.loads(objects["index.json"])["artifacts"]
    assert entry["sha256"] == second.artifact.sha256


def test_a_corrupt_s3_index_is_refused_and_nothing_is_uploaded(
    built: Built, s3_server: S3Server, s3_access: S3Access
) -> None:
    bucket = s3_server.new_bucket()
    s3_server.client().put_object(Bucket=bucket, Key="m/index.json", Body=b"{ not json")
    with pytest.raises(ConfigurationError) as raised:
        publish_artifact(
            built.artifact, built.signature, built.public_key, publish_url=f"s3://{bucket}/m", s3=s3_access
        )
    assert raised.value.message == f"s3://{bucket}/m/index.json is not valid JSON; refusing to overwrite a mirror index"
    assert s3_server.objects(bucket) == {"m/index.json": b"{ not json"}


def test_a_mirror_refusing_the_credentials_is_a_failure_naming_the_object(
    built: Built, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_server.new_bucket()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "a-secret-the-server-does-not-know")
    with (
        S3Access(s3_server.endpoint, required=True, purpose="--publish-url") as wrong,
        pytest.raises(S3Error) as raised,
    ):
        publish_artifact(built.artifact, built.signature, built.public_key, publish_url=f"s3://{bucket}", s3=wrong)
    assert raised.value.exit_code == 1
    assert f"s3://{bucket}/index.json" in raised.value.message
    assert "a-secret-the-server-does-not-know" not in raised.value.message
    assert s3_server.objects(bucket) == {}


# --- two publishers at once: no index entry is lost -----------------------------------------------------------------


def _publish_another_while_reading(
    monkeypatch: pytest.MonkeyPatch, store_class: type, other: Built, url: str, s3: S3Access | None = None
) -> None:
    """The first time this publish reads the index, another publish of `other` runs to completion."""
    real_read = store_class.read_versioned
    raced: list[bool] = []

    def read_then_race(self: Any, relative: str) -> tuple[bytes | None, str | None]:
        result = real_read(self, relative)
        if relative == INDEX_NAME and len(raced) == 1:  # after the early check, before the merge
            raced.append(True)
            monkeypatch.setattr(store_class, "read_versioned", real_read)
            publish_artifact(other.artifact, other.signature, other.public_key, publish_url=url, s3=s3)
        elif relative == INDEX_NAME:
            raced.append(False)
        return result

    monkeypatch.setattr(store_class, "read_versioned", read_then_race)


def _series_paths(index: dict[str, Any]) -> list[str]:
    return [entry["path"] for entry in index["artifacts"]]


def test_a_publish_racing_another_into_a_local_mirror_keeps_both_index_entries(
    tmp_path: Path, mirror: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = _make_artifact(tmp_path / "mine")
    other = _make_artifact(tmp_path / "other", version="25.11.7", series="25.11")
    _publish_another_while_reading(monkeypatch, LocalMirror, other, mirror.as_uri())
    _publish(mine, mirror)
    assert _series_paths(_index(mirror)) == [
        "trixie/24.11/slurm-24.11-trixie-software.tar.gz",
        "trixie/25.11/slurm-25.11-trixie-software.tar.gz",
    ]
    assert _hidden(mirror) == []


def test_a_publish_racing_another_into_an_s3_mirror_keeps_both_index_entries(
    tmp_path: Path, s3_server: S3Server, s3_access: S3Access, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_server.new_bucket()
    url = f"s3://{bucket}/m"
    mine = _make_artifact(tmp_path / "mine")
    other = _make_artifact(tmp_path / "other", version="25.11.7", series="25.11")
    _publish_another_while_reading(monkeypatch, S3Mirror, other, url, s3_access)
    publish_artifact(mine.artifact, mine.signature, mine.public_key, publish_url=url, s3=s3_access)
    index = json.loads(s3_server.objects(bucket)["m/index.json"])
    assert _series_paths(index) == [
        "trixie/24.11/slurm-24.11-trixie-software.tar.gz",
        "trixie/25.11/slurm-25.11-trixie-software.tar.gz",
    ]


def test_a_mirror_whose_index_keeps_changing_is_a_publish_failure(
    built: Built, mirror: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LocalMirror, "put_text_if", lambda self, relative, text, version: False)
    with pytest.raises(PublishError) as raised:
        _publish(built, mirror)
    assert raised.value.exit_code == 1
    assert raised.value.message == f"{mirror / INDEX_NAME} changed 8 times while this publish merged into it"


def test_an_s3_store_without_conditional_writes_still_gets_its_index(
    built: Built, s3_server: S3Server, s3_access: S3Access, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Older S3-compatible stores answer 501 NotImplemented to If-Match / If-None-Match: the last writer wins there."""
    bucket = s3_server.new_bucket()
    refused: list[str] = []
    real_client = s3_access.client

    def client_without_conditions() -> Any:
        client = real_client()
        real_put = client.put_object

        def put_object(**arguments: Any) -> Any:
            if "IfMatch" in arguments or "IfNoneMatch" in arguments:
                refused.append(arguments["Key"])
                raise ClientError({"Error": {"Code": "NotImplemented", "Message": "no conditions"}}, "PutObject")
            return real_put(**arguments)

        client.put_object = put_object
        return client

    monkeypatch.setattr(s3_access, "client", client_without_conditions)
    publish_artifact(built.artifact, built.signature, built.public_key, publish_url=f"s3://{bucket}", s3=s3_access)
    assert refused == ["index.json"]
    [entry] = json.loads(s3_server.objects(bucket)["index.json"])["artifacts"]
    assert entry["sha256"] == built.artifact.sha256
