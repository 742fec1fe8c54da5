"""S3 access on the host, against a real S3 endpoint (moto's server, signatures checked): credentials found by
boto3's own chain, removed from the environment once read, checked against the bucket before any container, and
written as the files a build container's boto3 (Spack's) reads."""

from __future__ import annotations

import builtins
import configparser
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.credentials import RefreshableCredentials

from slurm_factory.exceptions import EXIT_USAGE, ConfigurationError
from slurm_factory.s3 import CONFIG_FILE, CREDENTIALS_FILE, S3Access, S3Url, is_s3_url
from tests.s3server import S3Server


def _keys_in_environment(monkeypatch: pytest.MonkeyPatch, server: S3Server, secret: str | None = None) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret or server.secret_access_key)


@pytest.mark.parametrize(
    ("url", "bucket", "prefix", "key"),
    [
        ("s3://site-cache/slurm/", "site-cache", "slurm", "slurm/index.json"),
        ("s3://site-cache", "site-cache", "", "index.json"),
        ("s3://site-cache/a/b", "site-cache", "a/b", "a/b/index.json"),
    ],
)
def test_s3_url_names_the_bucket_and_a_prefix_without_slashes(url: str, bucket: str, prefix: str, key: str) -> None:
    parsed = S3Url.parse(url)
    assert (parsed.bucket, parsed.prefix) == (bucket, prefix)
    assert parsed.key("index.json") == key
    assert parsed.url("index.json") == f"s3://{bucket}/{key}"
    assert is_s3_url(url) and not is_s3_url("file:///srv/mirror") and not is_s3_url(None)


def test_a_publish_without_any_credentials_fails_with_a_hint_before_anything_runs() -> None:
    with pytest.raises(ConfigurationError) as raised, S3Access(None, required=True, purpose="--publish-url"):
        pass
    assert raised.value.exit_code == EXIT_USAGE
    assert raised.value.message == "--publish-url: no S3 credentials found"
    assert raised.value.hint is not None and "AWS_PROFILE" in raised.value.hint


def test_a_read_without_credentials_is_anonymous() -> None:
    with S3Access(None, required=False, purpose="--buildcache-url") as access:
        assert access.credential_files() == {}
        assert access.freeze() is None


def test_credentials_from_the_environment_sign_and_a_second_build_finds_them_again(
    monkeypatch: pytest.MonkeyPatch, s3_server: S3Server
) -> None:
    bucket = s3_server.new_bucket()
    _keys_in_environment(monkeypatch, s3_server)
    for attempt in ("first", "second"):  # two builds in one Python process
        with S3Access(s3_server.endpoint, required=True, purpose="--publish-url") as access:
            access.probe(S3Url.parse(f"s3://{bucket}/slurm"))
            access.client().put_object(Bucket=bucket, Key=f"slurm/{attempt}", Body=b"x")
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == s3_server.secret_access_key
    assert s3_server.objects(bucket) == {"slurm/first": b"x", "slurm/second": b"x"}  # the probe cleaned up


def test_credentials_limited_to_the_publish_prefix_pass_the_probe_and_others_are_refused(
    monkeypatch: pytest.MonkeyPatch, s3_server: S3Server
) -> None:
    bucket = s3_server.new_bucket()
    key_id, secret = s3_server.user_limited_to(bucket, "site/slurm")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    with S3Access(s3_server.endpoint, required=True, purpose="--publish-url") as access:
        access.probe(S3Url.parse(f"s3://{bucket}/site/slurm"), lists=True)
        with pytest.raises(ConfigurationError) as raised:
            access.probe(S3Url.parse(f"s3://{bucket}/elsewhere"))
    assert "the S3 credentials are refused" in raised.value.message


def test_an_endpoint_named_only_by_the_aws_profile_reaches_the_container_config(
    monkeypatch: pytest.MonkeyPatch, s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = s3_server.new_bucket()
    files = s3_server.write_credentials(tmp_path / "aws")
    config = Path(files["AWS_CONFIG_FILE"])
    config.write_text(config.read_text() + f"endpoint_url = {s3_server.endpoint}\n")
    for name, value in files.items():
        monkeypatch.setenv(name, value)
    with S3Access(None, required=True, purpose="--publish-url") as access:
        access.probe(S3Url.parse(f"s3://{bucket}"))  # the host's boto3 reaches the profile's endpoint
        container_config = access.credential_files()[CONFIG_FILE].decode()
    assert f"endpoint_url = {s3_server.endpoint}" in container_config


def test_aws_endpoints_are_not_written_for_the_container(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE000000001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    with S3Access(None, required=True, purpose="--publish-url") as access:
        assert access.endpoint_url is None
        assert "endpoint_url" not in access.credential_files()[CONFIG_FILE].decode()


def test_credentials_from_a_named_profile_are_used(
    monkeypatch: pytest.MonkeyPatch, s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = s3_server.new_bucket()
    files = s3_server.write_credentials(tmp_path / "aws")
    text = Path(files["AWS_SHARED_CREDENTIALS_FILE"]).read_text().replace("[default]", "[site-cache]")
    Path(files["AWS_SHARED_CREDENTIALS_FILE"]).write_text(text)
    for name, value in {**files, "AWS_PROFILE": "site-cache"}.items():
        monkeypatch.setenv(name, value)
    with S3Access(s3_server.endpoint, required=True, purpose="--publish-url") as access:
        access.probe(S3Url.parse(f"s3://{bucket}"))


def test_probe_refuses_a_wrong_secret_as_a_usage_error(monkeypatch: pytest.MonkeyPatch, s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket()
    _keys_in_environment(monkeypatch, s3_server, secret="not-the-secret-0123456789")
    with (
        S3Access(s3_server.endpoint, required=True, purpose="--publish-url") as access,
        pytest.raises(ConfigurationError) as raised,
    ):
        access.probe(S3Url.parse(f"s3://{bucket}/slurm"))
    assert raised.value.exit_code == EXIT_USAGE
    assert "refused" in raised.value.message and bucket in raised.value.message
    assert "not-the-secret" not in raised.value.message


def test_probe_names_a_missing_bucket(monkeypatch: pytest.MonkeyPatch, s3_server: S3Server) -> None:
    _keys_in_environment(monkeypatch, s3_server)
    with (
        S3Access(s3_server.endpoint, required=True, purpose="--publish-url") as access,
        pytest.raises(ConfigurationError) as raised,
    ):
        access.probe(S3Url.parse("s3://no-such-bucket-here/slurm"))
    assert raised.value.message == "--publish-url s3://no-such-bucket-here/slurm: no such bucket"


def test_probe_reports_an_unreachable_endpoint(monkeypatch: pytest.MonkeyPatch, s3_server: S3Server) -> None:
    _keys_in_environment(monkeypatch, s3_server)
    closed = "http://127.0.0.1:9"  # discard port: nothing listens there
    with (
        S3Access(closed, required=True, purpose="--publish-url") as access,
        pytest.raises(ConfigurationError) as raised,
    ):
        access.probe(S3Url.parse("s3://bucket/slurm"))
    assert "cannot reach the S3 endpoint http://127.0.0.1:9" in raised.value.message


def test_credential_files_are_what_boto3_reads_for_a_container(
    monkeypatch: pytest.MonkeyPatch, s3_server: S3Server, tmp_path: Path
) -> None:
    """The files a build container gets on its tmpfs: boto3's default chain (Spack's) finds the same key in them."""
    bucket = s3_server.new_bucket()
    _keys_in_environment(monkeypatch, s3_server)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    with S3Access(s3_server.endpoint, required=True, purpose="--publish-url") as access:
        files = access.credential_files()
    assert set(files) == {CREDENTIALS_FILE, CONFIG_FILE}
    config = configparser.RawConfigParser()
    config.read_string(files[CONFIG_FILE].decode())
    assert dict(config["default"]) == {"region": "eu-west-3", "endpoint_url": s3_server.endpoint}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / CREDENTIALS_FILE))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / CONFIG_FILE))
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    session = boto3.Session()  # as Spack's spack.util.s3 makes it: no explicit key
    frozen = session.get_credentials().get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key) == (s3_server.access_key_id, s3_server.secret_access_key)
    assert session.region_name == "eu-west-3"
    session.client("s3", endpoint_url=s3_server.endpoint).put_object(Bucket=bucket, Key="from-files", Body=b"ok")
    assert s3_server.objects(bucket) == {"from-files": b"ok"}


def test_a_session_token_travels_in_the_credentials_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIATEMPORARYKEY0001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "temporary-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-value")
    with S3Access(None, required=True, purpose="--publish-url") as access:
        parser = configparser.RawConfigParser()
        parser.read_string(access.credential_files()[CREDENTIALS_FILE].decode())
    assert dict(parser["default"]) == {
        "aws_access_key_id": "ASIATEMPORARYKEY0001",
        "aws_secret_access_key": "temporary-secret",
        "aws_session_token": "session-token-value",
    }


def test_without_boto3_an_s3_mirror_is_a_usage_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def without_boto3(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "boto3":
            raise ImportError("No module named 'boto3'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_boto3)
    with pytest.raises(ConfigurationError) as raised, S3Access(None, required=True, purpose="--publish-url"):
        pass
    assert raised.value.exit_code == EXIT_USAGE
    assert raised.value.hint is not None and "slurm-factory[s3]" in raised.value.hint


def test_temporary_credentials_are_refreshed_for_each_handover(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials from SSO or an assumed role expire; each step's files are made from a fresh snapshot."""
    issued: list[str] = []

    def refresh() -> dict[str, str]:
        issued.append(f"ASIATEMPORARY{len(issued):07d}")
        expiry = datetime.now(UTC) + timedelta(minutes=5)  # inside botocore's refresh window: refreshed every time
        return {"access_key": issued[-1], "secret_key": "s", "token": "t", "expiry_time": expiry.isoformat()}

    refreshable = RefreshableCredentials.create_from_metadata(refresh(), refresh, "assume-role")
    monkeypatch.setattr(boto3.Session, "get_credentials", lambda self: refreshable)
    with S3Access(None, required=True, purpose="--publish-url") as access:
        keys = []
        for _ in range(2):
            parser = configparser.RawConfigParser()
            parser.read_string(access.credential_files()[CREDENTIALS_FILE].decode())
            keys.append(parser["default"]["aws_access_key_id"])
    assert keys[0] != keys[1] and keys == issued[-2:]
