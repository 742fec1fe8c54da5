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


@dataclass
class Builds:
    cold: Build
    warm: Build
    key: ThrowawayKey
    mirror: Path
    leaks: LeakWatch
    images_scanned: int


@pytest.fixture(scope="session")
def builds(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Builds]:
    source = slurm_source_tarball()
    home = tmp_path_factory.mktemp("e2e-home")
    key = make_throwaway_key(tmp_path_factory.mktemp("e2e-key"))
    mirror = tmp_path_factory.mktemp("e2e-mirror")
    project = f"sf-e2e-{uuid.uuid4().hex[:8]}"
    try:
        cold = native_build(home, project, source)
        with LeakWatch(SecretScanner(key), docker_client, project) as leaks:
            warm = native_build(
                home, project, source, "--verify", "--signing-key", key.fingerprint,
                "--gpg-private-key", f"@{key.key_file}", "--gpg-passphrase-file", str(key.passphrase_file),
                "--publish", "slurm", "--publish-url", mirror.as_uri(),
            )  # fmt: skip
        images_scanned = leaks.scan_images()
        durations = warm.result["durations"]
        report_measurement(f"native cold build {cold.seconds:.0f}s (stages {cold.result['durations']})")
        rebuild = durations["total"] - durations.get("verify", 0.0) - durations.get("sign+publish", 0.0)
        report_measurement(f"native warm rebuild {rebuild:.0f}s = {rebuild / cold.seconds:.2f} x cold")
        report_measurement(f"verification during build {durations.get('verify', 0.0):.0f}s (images built cold)")
        report_measurement(f"sign + publish {durations.get('sign+publish', 0.0):.1f}s")
        report_measurement(f"tarball {cold.artifact.stat().st_size / 1e6:.1f} MB")
        yield Builds(cold, warm, key, mirror, leaks, images_scanned)
    finally:
        remove_project(docker_client, project)


@pytest.fixture(scope="session")
def build(builds: Builds) -> Build:
    return builds.warm
