"""Which secret files each step of a Spack build container gets: credentials to read an s3:// buildcache during
the build, the signing key (and credentials to write an s3:// mirror) only for the publish step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from slurm_factory.builder import _build_handout
from slurm_factory.request import make_request
from slurm_factory.s3 import CONFIG_FILE, CREDENTIALS_FILE, S3Access, S3Url
from slurm_factory.secret_input import decode_private_key
from slurm_factory.signing import SECRET_KEY_FILE, SECRET_PASSPHRASE_FILE, SigningKey
from tests.e2e.helpers import ThrowawayKey, make_throwaway_key
from tests.s3server import S3Server


@pytest.fixture(scope="module")
def throwaway(tmp_path_factory: pytest.TempPathFactory) -> ThrowawayKey:
    return make_throwaway_key(tmp_path_factory.mktemp("key"))


@pytest.fixture
def signer(throwaway: ThrowawayKey) -> Iterator[SigningKey]:
    private = decode_private_key(f"@{throwaway.key_file}")
    with SigningKey(throwaway.fingerprint, private, SecretStr(throwaway.passphrase)) as key:
        yield key


def test_an_s3_buildcache_read_gets_credentials_for_the_build_and_the_key_only_for_the_publish(
    signer: SigningKey, s3_access: S3Access, tmp_path: Path, throwaway: ThrowawayKey
) -> None:
    request = make_request(
        toolchain="trixie", buildcache="deps", buildcache_url="s3://cache/spack", publish="slurm",
        signing_key=throwaway.fingerprint, publish_url=(tmp_path / "mirror").as_uri(),
    )  # fmt: skip
    handout = _build_handout(request, signer, s3_access)
    assert set(handout.build()) == {CREDENTIALS_FILE, CONFIG_FILE}
    publish = handout.publish()
    assert set(publish) == {SECRET_KEY_FILE, SECRET_PASSPHRASE_FILE}  # a file:// push needs no credentials
    assert b"PRIVATE KEY" in publish[SECRET_KEY_FILE]
    assert publish[SECRET_PASSPHRASE_FILE] == throwaway.passphrase.encode()


def test_an_s3_publish_gets_credentials_and_the_key_for_the_publish_step_only(
    signer: SigningKey, s3_access: S3Access, throwaway: ThrowawayKey
) -> None:
    request = make_request(
        toolchain="trixie", publish="all", signing_key=throwaway.fingerprint, publish_url="s3://site/spack"
    )
    handout = _build_handout(request, signer, s3_access)
    assert handout.build() == {}
    assert set(handout.publish()) == {SECRET_KEY_FILE, SECRET_PASSPHRASE_FILE, CREDENTIALS_FILE, CONFIG_FILE}


def _spack_mirror(server: S3Server, acl: str = "private") -> str:
    bucket = server.new_bucket()
    server.client().put_object(Bucket=bucket, Key="spack/v3/layout.json", Body=b'{"signing": "gpg"}', ACL=acl)
    return f"s3://{bucket}/spack"


def test_a_public_s3_buildcache_is_read_without_any_credentials_in_the_container(
    public_s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = _spack_mirror(public_s3_server, acl="public-read")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", public_s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", public_s3_server.secret_access_key)
    request = make_request(toolchain="trixie", buildcache="all", buildcache_url=mirror)
    with S3Access(public_s3_server.endpoint, required=False, purpose="--buildcache-url") as opened:
        assert opened.reads_anonymously(S3Url.parse(mirror))
        assert _build_handout(request, None, opened).build() == {}


@pytest.mark.parametrize("server", ["s3_server", "public_s3_server"])
def test_a_private_s3_buildcache_gets_the_credentials_for_the_build(
    server: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    store: S3Server = request.getfixturevalue(server)
    mirror = _spack_mirror(store)  # private objects, on a server that checks signatures and on one that does not
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", store.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", store.secret_access_key)
    build = make_request(toolchain="trixie", buildcache="all", buildcache_url=mirror)
    with S3Access(store.endpoint, required=False, purpose="--buildcache-url") as opened:
        assert not opened.reads_anonymously(S3Url.parse(mirror))
        assert set(_build_handout(build, None, opened).build()) == {CREDENTIALS_FILE, CONFIG_FILE}
