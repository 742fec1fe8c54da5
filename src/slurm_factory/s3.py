"""S3 mirrors: where an `s3://` URL points, and the credentials a publish or a buildcache read uses.

Credentials are found on the host by boto3's own chain (environment, `AWS_PROFILE`, `~/.aws/*`, SSO, instance
roles), checked against the bucket before any container starts, and frozen again at each use so that refreshable
(temporary) credentials are fresh when hours of building end in a push. The host uploads native artifacts itself;
a Spack build container gets them as an AWS shared-credentials file and config file on its tmpfs, which Spack's
boto3 reads through `AWS_SHARED_CREDENTIALS_FILE` / `AWS_CONFIG_FILE` (paths, not secrets). Secret values are held
as `SecretStr` and never formatted into messages or logs (botocore's debug log shows request headers, a session
token among them: its loggers stay at WARNING even with `-v`).
"""

from __future__ import annotations

import configparser
import contextlib
import io
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlparse

from pydantic import SecretStr

from slurm_factory.exceptions import ConfigurationError, SlurmFactoryError

# Names of the credential files on a build container's tmpfs (layout.SECRETS).
CREDENTIALS_FILE = "aws-credentials"
CONFIG_FILE = "aws-config"
_PROFILE = "default"
# Every Spack 1.x binary mirror has it at its root.
SPACK_LAYOUT = "v3/layout.json"
# A probe object written (and, where allowed, deleted) under a publish prefix before anything is built.
PROBE_NAME = ".slurm-factory-write-probe"
for _logger in ("boto3", "botocore", "s3transfer", "urllib3"):
    logging.getLogger(_logger).setLevel(logging.WARNING)
_INSTALL_HINT = "install slurm-factory with S3 support: pip install 'slurm-factory[s3]'"
_CREDENTIALS_HINT = (
    "set AWS_PROFILE (a profile in ~/.aws/credentials or ~/.aws/config), or AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY; S3-compatible stores also need --s3-endpoint-url"
)


class S3Error(SlurmFactoryError):
    """An S3 operation failed after the request was accepted (exit 1)."""


@dataclass(frozen=True)
class S3Url:
    """`s3://bucket/prefix`: a bucket and a key prefix without leading or trailing slashes."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Url:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ConfigurationError(f"{url!r} is not an s3://bucket/prefix URL")
        return cls(parsed.netloc, parsed.path.strip("/"))

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def url(self, relative: str = "") -> str:
        key = self.key(relative) if relative else self.prefix
        return f"s3://{self.bucket}/{key}" if key else f"s3://{self.bucket}"


def is_s3_url(url: str | None) -> bool:
    return url is not None and urlparse(url).scheme == "s3"


def require_boto3() -> str:
    """Preflight: boto3 is importable (its version), or a ConfigurationError with the install hint."""
    return str(_boto3().__version__)


def _boto3() -> Any:
    try:
        import boto3
    except ImportError:
        raise ConfigurationError("s3:// mirrors need boto3, which is not installed", hint=_INSTALL_HINT) from None
    return boto3


def _ini(sections: dict[str, str]) -> bytes:
    """One `[default]` profile in AWS's INI format, written by configparser (values are checked to be one line)."""
    parser = configparser.RawConfigParser()
    parser.add_section(_PROFILE)
    for name, value in sections.items():
        if "\n" in value or "\r" in value:
            raise ConfigurationError(f"S3 credentials: {name} contains a line break")
        parser.set(_PROFILE, name, value)
    buffer = io.StringIO()
    parser.write(buffer)
    return buffer.getvalue().encode()


@dataclass(frozen=True)
class FrozenCredentials:
    """One snapshot of the credentials: what a boto3 client or a credentials file needs."""

    access_key_id: str
    secret_access_key: SecretStr
    session_token: SecretStr | None

    def client_arguments(self) -> dict[str, str]:
        arguments = {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key.get_secret_value(),
        }
        if self.session_token is not None:
            arguments["aws_session_token"] = self.session_token.get_secret_value()
        return arguments


class S3Access:
    """The host's access to S3 for one request. Use as a context manager: `__enter__` finds the credentials (and
    fails with exit 2 when a publish has none), `probe()` checks a publish target before any container starts."""

    def __init__(self, endpoint_url: str | None, *, required: bool, purpose: str) -> None:
        self.endpoint_url = endpoint_url
        self.required = required
        self.purpose = purpose
        self._session: Any = None
        self._credentials: Any = None
        self.region: str | None = None

    def __enter__(self) -> S3Access:
        boto3 = _boto3()
        try:
            self._session = boto3.Session()
            self._credentials = self._session.get_credentials()
        except Exception as error:  # botocore raises many kinds (profile not found, partial credentials, SSO)
            raise ConfigurationError(
                f"{self.purpose}: cannot load S3 credentials: {type(error).__name__}", hint=_CREDENTIALS_HINT
            ) from None
        if self._credentials is None and self.required:
            raise ConfigurationError(f"{self.purpose}: no S3 credentials found", hint=_CREDENTIALS_HINT)
        self.region = self._session.region_name
        if self.endpoint_url is None:
            self.endpoint_url = self._configured_endpoint()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._credentials = None
        self._session = None

    def _configured_endpoint(self) -> str | None:
        """An endpoint the AWS profile configures (`endpoint_url` in ~/.aws/config): the host's boto3 uses it on
        its own, so the container must be told too; AWS's own endpoints need no mention."""
        resolved = str(self._session.client("s3", region_name=self.region or "us-east-1").meta.endpoint_url)
        host = urlparse(resolved).hostname or ""
        return None if host == "amazonaws.com" or host.endswith(".amazonaws.com") else resolved

    def freeze(self) -> FrozenCredentials | None:
        """The credentials now (refreshed by botocore when they are temporary and about to expire)."""
        if self._credentials is None:
            return None
        frozen = self._credentials.get_frozen_credentials()
        token = getattr(frozen, "token", None)
        return FrozenCredentials(
            access_key_id=str(frozen.access_key),
            secret_access_key=SecretStr(str(frozen.secret_key)),
            session_token=SecretStr(str(token)) if token else None,
        )

    def client(self, *, anonymous: bool = False) -> Any:
        """A boto3 S3 client with the frozen credentials (anonymous when there are none, or when asked)."""
        if self._session is None:
            raise RuntimeError("S3Access used outside its `with` block")
        arguments: dict[str, Any] = {"endpoint_url": self.endpoint_url, "region_name": self.region}
        frozen = None if anonymous else self.freeze()
        if frozen is None:
            from botocore import UNSIGNED
            from botocore.config import Config

            arguments["config"] = Config(signature_version=UNSIGNED)
        else:
            arguments.update(frozen.client_arguments())
        return self._session.client("s3", **arguments)

    def probe(self, url: S3Url, *, lists: bool = False) -> None:
        """These credentials may write under the prefix (a small object is put there, and deleted where allowed) and,
        with `lists` (a Spack index update lists the mirror), list it: checked before hours of building depend on
        it. Only what a publish needs is asked, so credentials limited to a prefix pass."""
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.client()
        probe = url.key(PROBE_NAME)
        try:
            client.put_object(Bucket=url.bucket, Key=probe, Body=b"slurm-factory checks that it may publish here\n")
            if lists:
                client.list_objects_v2(Bucket=url.bucket, Prefix=url.key(""), MaxKeys=1)
        except ClientError as error:
            raise self._refusal(url, str(error.response.get("Error", {}).get("Code", ""))) from None
        except BotoCoreError as error:
            where = self.endpoint_url or "AWS"
            raise ConfigurationError(
                f"{self.purpose} {url.url()}: cannot reach the S3 endpoint {where}: {type(error).__name__}",
                hint="check --s3-endpoint-url (or AWS_ENDPOINT_URL_S3) and the network",
            ) from None
        with contextlib.suppress(BotoCoreError, ClientError):  # a publish-only identity may not delete: harmless
            client.delete_object(Bucket=url.bucket, Key=probe)

    def reads_anonymously(self, url: S3Url) -> bool:
        """Whether a Spack mirror there is public (its `v3/layout.json` answers an unsigned request): then a build
        that only reads it gets no credentials at all."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client(anonymous=True).head_object(Bucket=url.bucket, Key=url.key(SPACK_LAYOUT))
        except (BotoCoreError, ClientError):
            return False
        return True

    def _refusal(self, url: S3Url, code: str) -> ConfigurationError:
        if code in ("404", "NoSuchBucket"):
            return ConfigurationError(f"{self.purpose} {url.url()}: no such bucket")
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return ConfigurationError(
                f"{self.purpose} {url.url()}: the S3 credentials are refused for bucket {url.bucket} ({code})",
                hint=_CREDENTIALS_HINT,
            )
        return ConfigurationError(f"{self.purpose} {url.url()}: the bucket cannot be used ({code})")

    def credential_files(self) -> dict[str, bytes]:
        """AWS shared-credentials and config files for a build container's tmpfs (nothing when anonymous)."""
        frozen = self.freeze()
        if frozen is None:
            return {}
        config = {"region": self.region} if self.region else {}
        if self.endpoint_url is not None:
            # Spack hands a mirror's endpoint_url to boto3, but not to an `aws` CLI it may find on PATH; and an
            # endpoint that only the host's AWS profile names reaches the container this way.
            config["endpoint_url"] = self.endpoint_url
        return {CREDENTIALS_FILE: _ini(frozen.client_arguments()), CONFIG_FILE: _ini(config)}
