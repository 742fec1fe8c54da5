"""The session's end-to-end builds, shared by every e2e module and by the distributed tests (whose workers compile
from a copy of their ccache): a cold build, then the same request rebuilt from cold (`--no-cache`) with `--verify`,
signing with a throwaway passphrase-protected key and publishing to S3 — watched for secret leaks the whole time;
the two tarballs must be bit-identical. Registered for the whole suite by tests/conftest.py."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest

from tests.conftest import slurm_source_tarball
from tests.e2e.helpers import (
    ARTIFACT,
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
    warm: Build  # the --no-cache rebuild of the cold build's request, verified, signed and published to S3
    first_tarball: Path  # a copy of the cold build's tarball, taken before the rebuild
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
        first_tarball = tmp_path_factory.mktemp("e2e-first") / ARTIFACT
        shutil.copyfile(cold.artifact, first_tarball)
        scanner = SecretScanner(key, others=(s3_server.secret_access_key,))
        with LeakWatch(scanner, docker_client, project) as leaks:
            warm = native_build(
                home, project, source, "--no-cache", "--verify", *signing, "--publish", "slurm",
                "--publish-url", f"s3://{bucket}/slurm", "--s3-endpoint-url", s3_server.endpoint, env=aws,
            )  # fmt: skip
        images_scanned = leaks.scan_images()
        durations, cold_durations = warm.result["durations"], cold.result["durations"]
        cold_build = cold.seconds - cold_durations.get("sign+publish", 0.0)
        report_measurement(f"native cold build {cold_build:.0f}s (stages {cold_durations})")
        rebuild = durations["total"] - durations.get("verify", 0.0) - durations.get("sign+publish", 0.0)
        report_measurement(f"native --no-cache rebuild {rebuild:.0f}s = {rebuild / cold_build:.2f} x cold")
        same = "bit-identical" if warm.result["sha256"] == cold.result["sha256"] else "DIFFERENT"
        report_measurement(f"two cold builds of one request: {same} (sha256 {warm.result['sha256']})")
        report_measurement(f"verification during build {durations.get('verify', 0.0):.0f}s (images built cold)")
        report_measurement(
            f"sign + publish: file:// {cold_durations.get('sign+publish', 0.0):.1f}s, "
            f"s3:// {durations.get('sign+publish', 0.0):.1f}s (the bucket was probed before the build)"
        )
        report_measurement(f"tarball {cold.artifact.stat().st_size / 1e6:.1f} MB")
        credentials = Path(aws["AWS_SHARED_CREDENTIALS_FILE"])
        yield Builds(cold, warm, first_tarball, key, mirror, s3_server, bucket, credentials, leaks, images_scanned)
    finally:
        remove_project(docker_client, project)


@pytest.fixture(scope="session")
def build(builds: Builds) -> Build:
    return builds.warm


@pytest.fixture(scope="session")
def warm_ccache(builds: Builds) -> Path:
    """The cold e2e build's ccache. A test whose point is not a cold compile (faults, the GPU matrix) seeds its own
    home with a copy: the same compile then takes a third of the time, and CI stays within its budget."""
    return builds.cold.home / "ccache"


def seed_ccache(home: Path, ccache: Path) -> None:
    """`home`'s ccache starts as a copy of `ccache` (ccache's directory is relocatable)."""
    shutil.copytree(ccache, home / "ccache", dirs_exist_ok=True)
