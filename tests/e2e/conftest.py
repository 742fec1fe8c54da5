"""The end-to-end builds, shared by every e2e module: a cold build, then the same request again (warm ccache)
with `--verify`, signing with a throwaway passphrase-protected key and publishing to a file:// mirror — watched
for secret leaks the whole time."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from tests.conftest import slurm_source_tarball
from tests.e2e.helpers import (
    Build,
    LeakWatch,
    SecretScanner,
    ThrowawayKey,
    make_throwaway_key,
    native_build,
    remove_project,
    report_measurement,
)
from tests.s3server import S3Server


@dataclass
class Builds:
    cold: Build
    warm: Build
    key: ThrowawayKey
    mirror: Path
    s3: S3Server
    bucket: str
    s3_credentials: Path
    leaks: LeakWatch
    images_scanned: int


@pytest.fixture(scope="session")
def builds(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server
) -> Iterator[Builds]:
    """Cold: signed, published to a file:// mirror. Warm (same request, warm ccache): verified, signed and
    published to an S3 bucket with credentials from an AWS credentials file, watched for secret leaks."""
    source = slurm_source_tarball()
    home = tmp_path_factory.mktemp("e2e-home")
    key = make_throwaway_key(tmp_path_factory.mktemp("e2e-key"))
    mirror = tmp_path_factory.mktemp("e2e-mirror")
    bucket = s3_server.new_bucket()
    aws = s3_server.write_credentials(tmp_path_factory.mktemp("e2e-aws"))
    signing = ("--signing-key", key.fingerprint, "--gpg-private-key", f"@{key.key_file}",
               "--gpg-passphrase-file", str(key.passphrase_file))  # fmt: skip
    project = f"sf-e2e-{uuid.uuid4().hex[:8]}"
    try:
        cold = native_build(home, project, source, *signing, "--publish", "slurm", "--publish-url", mirror.as_uri())
        scanner = SecretScanner(key, others=(s3_server.secret_access_key,))
        with LeakWatch(scanner, docker_client, project) as leaks:
            warm = native_build(
                home, project, source, "--verify", *signing, "--publish", "slurm",
                "--publish-url", f"s3://{bucket}/slurm", "--s3-endpoint-url", s3_server.endpoint, env=aws,
            )  # fmt: skip
        images_scanned = leaks.scan_images()
        durations, cold_durations = warm.result["durations"], cold.result["durations"]
        cold_build = cold.seconds - cold_durations.get("sign+publish", 0.0)
        report_measurement(f"native cold build {cold_build:.0f}s (stages {cold_durations})")
        rebuild = durations["total"] - durations.get("verify", 0.0) - durations.get("sign+publish", 0.0)
        report_measurement(f"native warm rebuild {rebuild:.0f}s = {rebuild / cold_build:.2f} x cold")
        report_measurement(f"verification during build {durations.get('verify', 0.0):.0f}s (images built cold)")
        report_measurement(
            f"sign + publish: file:// {cold_durations.get('sign+publish', 0.0):.1f}s, "
            f"s3:// {durations.get('sign+publish', 0.0):.1f}s (the bucket was probed before the build)"
        )
        report_measurement(f"tarball {cold.artifact.stat().st_size / 1e6:.1f} MB")
        credentials = Path(aws["AWS_SHARED_CREDENTIALS_FILE"])
        yield Builds(cold, warm, key, mirror, s3_server, bucket, credentials, leaks, images_scanned)
    finally:
        remove_project(docker_client, project)


@pytest.fixture(scope="session")
def build(builds: Builds) -> Build:
    return builds.warm
