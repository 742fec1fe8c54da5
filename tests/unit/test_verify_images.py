"""The verification images start from the toolchain's catalog image unless the manifest's own is that image or
already on this host: an untrusted manifest cannot make verify pull an image of its choosing."""

from __future__ import annotations

from pathlib import Path

import pytest

from slurm_factory.choices import Arch
from slurm_factory.verify.artifact_reader import open_artifact, scan_tarball
from slurm_factory.verify.images import checked_base_image, verify_images
from tests.unit.tarballs import manifest, plugin_members, write_artifact


@pytest.mark.parametrize(
    ("named", "on_host", "expected"),
    [
        ("debian:trixie", set(), "debian:trixie"),
        ("mirror.example/debian:trixie", {"mirror.example/debian:trixie"}, "mirror.example/debian:trixie"),
        ("attacker/image:latest", set(), "debian:trixie"),
    ],
    ids=["catalog-image", "local-mirror-image", "unknown-image"],
)
def test_the_base_image_is_the_manifests_only_when_known(
    tmp_path: Path, named: str, on_host: set[str], expected: str
) -> None:
    document = manifest(toolchain={"name": "trixie", "base_image": named})
    artifact = open_artifact(scan_tarball(write_artifact(tmp_path, plugin_members(), document)))

    base_image = checked_base_image(artifact, on_host.__contains__)

    assert base_image == expected
    images = verify_images(artifact, "sf-test", base_image)
    assert f"FROM {expected}\n" in images.runtime.dockerfile
    assert named == expected or named not in images.cluster.dockerfile


@pytest.mark.parametrize("named", ["debian:trixie", "arm64v8/debian:trixie", "attacker/image:latest"])
def test_an_arm64_artifact_on_an_amd64_host_is_checked_in_the_catalogs_arm64_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, named: str
) -> None:
    """A cross build's manifest names the build host's image (debian:trixie); an emulated one the arm64 image."""
    monkeypatch.setattr("slurm_factory.verify.images.host_arch", lambda: Arch.AMD64)
    document = manifest(arch="arm64", toolchain={"name": "trixie", "base_image": named})
    artifact = open_artifact(scan_tarball(write_artifact(tmp_path, plugin_members(), document)))

    base_image = checked_base_image(artifact, {named}.__contains__)

    assert base_image == "arm64v8/debian:trixie"
    images = verify_images(artifact, "sf-test", base_image)
    assert "FROM arm64v8/debian:trixie\n" in images.runtime.dockerfile
    assert images.runtime.repository == "sf-test/verify-runtime-trixie-arm64"
    assert images.cluster.repository == "sf-test/verify-cluster-trixie-arm64"


def test_an_amd64_artifact_keeps_its_image_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("slurm_factory.verify.images.host_arch", lambda: Arch.AMD64)
    artifact = open_artifact(scan_tarball(write_artifact(tmp_path, plugin_members(), manifest())))
    images = verify_images(artifact, "sf-test", checked_base_image(artifact, set().__contains__))
    assert images.runtime.repository == "sf-test/verify-runtime-trixie"
