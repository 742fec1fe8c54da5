"""Shared fixtures: a real Docker engine (skipped only when the suite is not run by scripts/run-tests) and
isolated settings per test."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from slurm_factory.config import Settings
from slurm_factory.s3 import S3Access
from tests.s3server import S3Server, running_s3_server

BASE_IMAGE = "debian:trixie"


def pytest_configure(config: pytest.Config) -> None:
    """A shell without job control starts background commands (`scripts/run-tests &`, nohup) with SIGINT ignored,
    and every process the tests start would inherit that: the Ctrl-C tests' CLI would never see their SIGINT.
    Caught here instead, it is back to the default in each child at exec."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's ~/.slurm-factory or their secrets."""
    monkeypatch.setenv("SLURM_FACTORY_HOME", str(tmp_path / "sf-home"))
    for name in ("IF_PROJECT_NAME", "SPACK_JOBS", "SLURM_FACTORY_GPG_PRIVATE_KEY", "SLURM_FACTORY_GPG_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)
    # No developer AWS profile, key or endpoint; boto3 never asks an instance metadata service from a test.
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws" / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws" / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(project_name=f"sf-test-{uuid.uuid4().hex[:8]}", home=tmp_path / "sf-home", jobs=2)


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    """The real Docker engine. When the suite runs through scripts/run-tests its absence is a failure."""
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except docker.errors.DockerException as error:
        if os.environ.get("SLURM_FACTORY_TESTS_REQUIRE_DOCKER") == "1":
            pytest.fail(f"Docker engine required but unreachable: {error}")
        pytest.skip(f"no Docker engine reachable ({error}); scripts/run-tests starts one")
    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{BASE_IMAGE} is missing; `scripts/testenv up` builds it with debootstrap")
    return client


@pytest.fixture
def project_cleanup(docker_client: docker.DockerClient, settings: Settings) -> Iterator[str]:
    """A unique project name whose containers, networks and images are removed after the test, whatever happened."""
    from tests.e2e.helpers import remove_project

    yield settings.project_name
    remove_project(docker_client, settings.project_name)


def slurm_source_tarball() -> Path:
    """The Slurm 24.11.5 source (Debian's orig tarball) prepared by `scripts/testenv up`."""
    configured = os.environ.get("SLURM_FACTORY_TEST_SLURM_SOURCE")
    path = Path(configured) if configured else None
    if path is None or not path.is_file():
        if os.environ.get("SLURM_FACTORY_TESTS_REQUIRE_DOCKER") == "1":
            pytest.fail("SLURM_FACTORY_TEST_SLURM_SOURCE does not name the Slurm 24.11.5 tarball")
        pytest.skip("SLURM_FACTORY_TEST_SLURM_SOURCE unset; scripts/run-tests prepares the Slurm source")
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print what the e2e, verification and Spack tests measured (build times, sizes): reported, not asserted."""
    from tests.e2e.helpers import MEASUREMENTS

    if MEASUREMENTS:
        terminalreporter.section("measured")
        for line in MEASUREMENTS:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 endpoint on 127.0.0.1 that checks signatures (moto's server), for the whole session."""
    with running_s3_server(tmp_path_factory.mktemp("s3-server") / "moto.log") as server:
        yield server


@pytest.fixture(scope="session")
def public_s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """An S3 endpoint that answers unsigned requests too, like a public buildcache bucket."""
    with running_s3_server(tmp_path_factory.mktemp("s3-public") / "moto.log", authenticated=False) as server:
        yield server


@pytest.fixture
def s3_access(monkeypatch: pytest.MonkeyPatch, s3_server: S3Server) -> Iterator[S3Access]:
    """Host-side access to the test S3 server with its user's key (from the environment, as a site sets it)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    with S3Access(s3_server.endpoint, required=True, purpose="--publish-url") as access:
        yield access


# The session's e2e builds, for every directory that reads them (e2e, the distributed tests' ccache); imported last,
# since that module uses this one's helpers.
from tests.e2e.shared_builds import build, builds, warm_ccache  # noqa: E402

__all__ = ["build", "builds", "warm_ccache"]
