"""`build()` answers a request from the store before anything else: no source check, no Docker. A stored artifact
whose bytes no longer match, or `--no-cache`, builds again (here: stops at the tampered source, before Docker)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slurm_factory import store
from slurm_factory.artifact import build_manifest, write_artifact
from slurm_factory.builder import build
from slurm_factory.config import Settings
from slurm_factory.exceptions import SlurmFactoryError
from slurm_factory.plan import make_plan
from slurm_factory.request import make_request
from slurm_factory.sbom import write_sbom
from tests.unit.test_artifact import META, _tree_bytes

NAME = "slurm-24.11-trixie-software.tar.gz"


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A source that fails its checksum, and a Docker engine nobody listens on: a build attempt fails at once."""
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    path = tmp_path / "slurm-24.11.5.tar.gz"
    path.write_bytes(b"not the release")
    return str(path)


@pytest.fixture
def stored(settings: Settings, tmp_path: Path) -> Path:
    plan = make_plan(make_request(slurm_version="24.11.5", toolchain="trixie", engine="native"), settings)
    tree = tmp_path / "tree.tar"
    tree.write_bytes(_tree_bytes())
    destination = store.stored_path(settings.builds_dir, plan)
    artifact = write_artifact(plan, tree, build_manifest(plan, META), destination=destination)
    write_sbom(artifact)
    return destination


def test_a_stored_artifact_is_returned_without_building(settings: Settings, source: str, stored: Path) -> None:
    result = build(slurm_version="24.11.5", toolchain="trixie", engine="native", slurm_source=source, settings=settings)

    assert result.reused is True
    assert result.to_json()["reused"] is True
    assert result.stored == stored
    assert result.artifact == settings.builds_dir / NAME
    assert os.readlink(settings.builds_dir / NAME) == f"by-id/{result.build_id}/{NAME}"
    assert result.sbom == settings.builds_dir / f"{NAME}.sbom.json"
    assert result.sha256 == (stored.parent / f"{NAME}.sha256").read_text().split()[0]


def test_no_cache_builds_again(settings: Settings, source: str, stored: Path) -> None:
    with pytest.raises(SlurmFactoryError, match="sha256"):
        build(
            slurm_version="24.11.5",
            toolchain="trixie",
            engine="native",
            slurm_source=source,
            no_cache=True,
            settings=settings,
        )


def test_a_stored_artifact_that_no_longer_matches_its_checksum_is_built_again(
    settings: Settings, source: str, stored: Path
) -> None:
    stored.write_bytes(stored.read_bytes()[:-10])

    with pytest.raises(SlurmFactoryError, match="sha256"):
        build(slurm_version="24.11.5", toolchain="trixie", engine="native", slurm_source=source, settings=settings)


def test_another_release_is_not_answered_by_the_stored_one(settings: Settings, source: str, stored: Path) -> None:
    with pytest.raises(SlurmFactoryError, match="sha256"):
        build(slurm_version="24.11.6", toolchain="trixie", engine="native", slurm_source=source, settings=settings)
    assert stored.is_file()
