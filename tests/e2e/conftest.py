"""The e2e modules' store builds (tests/e2e/shared_builds.py has the session's cold and warm builds): the e2e
request once more (reused from the store) and a request of another identity with the same artifact name (warm
ccache), which must not replace the first."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import docker
import docker.errors
import pytest

from tests.conftest import slurm_source_tarball
from tests.e2e.helpers import (
    Build,
    native_build,
    report_measurement,
)
from tests.e2e.shared_builds import Builds


@dataclass
class StoreBuilds:
    reused: Build  # the cold build's request once more, with --verify and the key: nothing left to do
    other: Build  # another identity with the same artifact name: another base image (same OS), warm ccache
    back: Build  # the first request again, after `other`
    first_sha256: str


@pytest.fixture(scope="session")
def store_builds(builds: Builds, docker_client: docker.DockerClient) -> StoreBuilds:
    cold = builds.cold
    source = slurm_source_tarball()
    key = builds.key
    signing = ("--signing-key", key.fingerprint, "--gpg-private-key", f"@{key.key_file}",
               "--gpg-passphrase-file", str(key.passphrase_file))  # fmt: skip
    reused = native_build(cold.home, cold.project, source, "--verify", *signing)
    report_measurement(f"reuse of a stored artifact via the CLI {reused.seconds:.1f}s (target <= 2 s)")
    # The same OS image under another name: a different toolchain image, so a different identity.
    alias = f"{cold.project}/debian:trixie-alias"
    docker_client.images.get("debian:trixie").tag(alias)
    other = native_build(cold.home, cold.project, source, "--base-image", alias)
    report_measurement(f"native rebuild of another identity with warm ccache {other.seconds:.0f}s")
    back = native_build(cold.home, cold.project, source)
    with contextlib.suppress(docker.errors.APIError):  # the toolchain image built from it keeps the layers
        docker_client.images.remove(alias)
    return StoreBuilds(reused, other, back, builds.warm.result["sha256"])
