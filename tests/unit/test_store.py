"""The artifact store: artifacts kept by identity, contract names as relative links to the newest, nothing of
another identity ever replaced, old ones pruned per request, and what `list` believes (verified, signed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from slurm_factory import store
from slurm_factory.exceptions import ConfigurationError
from tests.store_helpers import ARTIFACT_NAME, stored_artifact


def test_find_returns_a_stored_artifact_whose_bytes_match_its_sha256(tmp_path: Path) -> None:
    path = stored_artifact(tmp_path, "aaaa")

    found = store.find(path)

    assert found is not None
    assert found.path == path
    assert found.manifest["build_id"] == "aaaa"


def test_find_refuses_an_artifact_that_no_longer_matches_its_sha256(tmp_path: Path) -> None:
    path = stored_artifact(tmp_path, "aaaa")
    path.write_bytes(path.read_bytes() + b"tampered")

    assert store.find(path) is None


def test_find_refuses_an_artifact_without_its_checksum(tmp_path: Path) -> None:
    path = stored_artifact(tmp_path, "aaaa")
    path.with_name(path.name + ".sha256").unlink()

    assert store.find(path) is None


def test_contract_names_are_relative_links_to_the_stored_artifact_and_its_sidecars(tmp_path: Path) -> None:
    path = stored_artifact(tmp_path, "aaaa")

    link = tmp_path / ARTIFACT_NAME
    assert link.is_symlink()
    assert os.readlink(link) == f"by-id/aaaa/{ARTIFACT_NAME}"
    assert link.read_bytes() == path.read_bytes()
    assert os.readlink(tmp_path / f"{ARTIFACT_NAME}.sha256") == f"by-id/aaaa/{ARTIFACT_NAME}.sha256"
    assert not (tmp_path / f"{ARTIFACT_NAME}.asc").exists()


def test_another_identity_of_the_same_request_keeps_the_first_and_takes_the_name(tmp_path: Path) -> None:
    first = stored_artifact(tmp_path, "aaaa", version="24.11.5")
    first_bytes = first.read_bytes()
    (first.parent / f"{ARTIFACT_NAME}.asc").write_text("signature of the first")
    store.link_contract_names(tmp_path, first)

    second = stored_artifact(tmp_path, "bbbb", version="24.11.6")

    assert first.read_bytes() == first_bytes
    assert (tmp_path / ARTIFACT_NAME).resolve() == second.resolve()
    # The first one's signature never appears to describe the second.
    assert not (tmp_path / f"{ARTIFACT_NAME}.asc").exists()
    assert (first.parent / f"{ARTIFACT_NAME}.asc").read_text() == "signature of the first"


def test_a_tarball_written_under_the_contract_name_by_an_older_version_moves_into_the_store(tmp_path: Path) -> None:
    legacy = tmp_path / ARTIFACT_NAME
    legacy.write_bytes(b"old tarball")
    (tmp_path / f"{ARTIFACT_NAME}.manifest.json").write_text(json.dumps({"build_id": "0ld0"}))

    stored_artifact(tmp_path, "aaaa")

    assert (tmp_path / "by-id" / "0ld0" / ARTIFACT_NAME).read_bytes() == b"old tarball"
    assert (tmp_path / ARTIFACT_NAME).is_symlink()


def test_stored_artifacts_lists_every_identity_and_marks_the_linked_one(tmp_path: Path) -> None:
    stored_artifact(tmp_path, "aaaa", built_at="2026-01-01T00:00:00+00:00")
    stored_artifact(tmp_path, "bbbb", built_at="2026-01-02T00:00:00+00:00")

    listed = store.stored_artifacts(tmp_path)

    assert [(item.build_id, item.current) for item in listed] == [("bbbb", True), ("aaaa", False)]


def test_a_dangling_link_in_builds_does_not_break_the_listing(tmp_path: Path) -> None:
    stored_artifact(tmp_path, "aaaa")
    (tmp_path / "slurm-25.11-noble-software.tar.gz").symlink_to("by-id/gone/slurm-25.11-noble-software.tar.gz")

    assert [item.build_id for item in store.stored_artifacts(tmp_path)] == ["aaaa"]


def test_a_garbage_signature_does_not_count_as_signed(tmp_path: Path) -> None:
    path = stored_artifact(tmp_path, "aaaa")
    (path.parent / f"{ARTIFACT_NAME}.asc").write_text("-----BEGIN PGP SIGNATURE-----\ngarbage\n")
    (tmp_path / "ABCDEF0123456789.pub.asc").write_text("not a key either\n")

    [item] = store.stored_artifacts(tmp_path)

    assert not item.signed(store.public_keys(tmp_path))


def test_verified_means_a_passed_report_of_exactly_these_bytes(tmp_path: Path) -> None:
    path = stored_artifact(tmp_path, "aaaa")
    manifest_path = path.with_name(path.name + ".manifest.json")
    manifest = json.loads(manifest_path.read_text())
    digest = path.with_name(path.name + ".sha256").read_text().split()[0]
    manifest_path.write_text(json.dumps({**manifest, "verified": {"passed": True, "sha256": "0" * 64}}))
    assert not store.stored_artifacts(tmp_path)[0].verified

    manifest_path.write_text(json.dumps({**manifest, "verified": {"passed": True, "sha256": digest}}))
    assert store.stored_artifacts(tmp_path)[0].verified


def test_prune_keeps_the_newest_of_each_request_and_the_one_its_name_points_at(tmp_path: Path) -> None:
    oldest = stored_artifact(tmp_path, "aaaa", built_at="2026-01-01T00:00:00+00:00")
    middle = stored_artifact(tmp_path, "bbbb", built_at="2026-01-02T00:00:00+00:00")
    newest = stored_artifact(tmp_path, "cccc", built_at="2026-01-03T00:00:00+00:00", link=False)
    store.link_contract_names(tmp_path, middle)  # the name points at an older one (e.g. reused after cccc)
    gpu = stored_artifact(tmp_path, "dddd", name="slurm-24.11-trixie-gpu-software.tar.gz")

    removed = store.prune(tmp_path, keep=1)

    assert sorted(removed) == sorted([oldest.parent, newest.parent])
    assert middle.is_file() and gpu.is_file()
    assert (tmp_path / ARTIFACT_NAME).resolve() == middle.resolve()


def test_prune_keeps_n_per_request(tmp_path: Path) -> None:
    paths = [stored_artifact(tmp_path, f"id{n}", built_at=f"2026-01-0{n}T00:00:00+00:00") for n in range(1, 5)]

    store.prune(tmp_path, keep=2)

    assert [path.is_file() for path in paths] == [False, False, True, True]


def test_prune_never_removes_the_only_artifact_of_a_request(tmp_path: Path) -> None:
    only = stored_artifact(tmp_path, "aaaa")

    assert store.prune(tmp_path, keep=1) == []
    assert only.is_file()


def test_prune_refuses_to_keep_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        store.prune(tmp_path, keep=0)
