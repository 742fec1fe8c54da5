"""The SBOM beside every artifact: CycloneDX 1.6 JSON that the format's own schema accepts, naming Slurm with its
source sha256, each linked OS package as a deb/rpm purl (native) or each Spack package with its hash (Spack), and
the check `verify` runs on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from slurm_factory.artifact import Artifact
from slurm_factory.catalog import resolve_release
from slurm_factory.sbom import make_sbom, sbom_problems, write_sbom

RELEASE = resolve_release("24.11.5")
SHA256 = "ab" * 32


def _manifest(engine: str = "native", toolchain: str = "trixie", os_name: str = "Debian 13") -> dict[str, Any]:
    return {
        "slurm": {"version": RELEASE.version, "tag": RELEASE.tag, "sha256": RELEASE.sha256, "url": RELEASE.url},
        "toolchain": {"name": toolchain, "os": os_name},
        "engine": engine,
        "build_id": "0123456789abcdef",
        "source_date_epoch": RELEASE.source_date_epoch,
        "dependencies": [{"name": "libmunge2", "version": "0.5.16-1"}, {"name": "libjson-c5", "version": "0.18+ds-1"}],
        "spack_packages": [
            {"name": "slurm", "version": "24-11-5-1", "hash": "abcdefg"},
            {"name": "munge", "version": "0.5.15", "hash": "h1h2h3h"},
            {"name": "json-c", "version": "0.16"},
        ]
        if engine == "spack"
        else [],
    }


def _artifact(tmp_path: Path, manifest: dict[str, Any]) -> Artifact:
    path = tmp_path / "slurm-24.11-trixie-software.tar.gz"
    path.write_bytes(b"tarball")
    return Artifact(path, SHA256, 7, manifest)


def _validate(text: str) -> None:
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    assert error is None, str(error)


@pytest.mark.parametrize("engine", ["native", "spack"])
def test_sbom_is_valid_cyclonedx_1_6(tmp_path: Path, engine: str) -> None:
    _validate(make_sbom(_artifact(tmp_path, _manifest(engine))))


def test_the_schema_validator_rejects_a_broken_document() -> None:
    """The validation above can fail: a component without a name is refused."""
    broken = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1, "components": [{"type": "library"}]}

    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(broken)) is not None


def test_sbom_names_the_artifact_and_slurm_with_its_source_sha256(tmp_path: Path) -> None:
    document = json.loads(make_sbom(_artifact(tmp_path, _manifest())))

    subject = document["metadata"]["component"]
    assert subject["name"] == "slurm-24.11-trixie-software.tar.gz"
    assert subject["hashes"] == [{"alg": "SHA-256", "content": SHA256}]
    [slurm] = [c for c in document["components"] if c["name"] == "slurm"]
    assert slurm["version"] == "24.11.5"
    assert slurm["hashes"] == [{"alg": "SHA-256", "content": RELEASE.sha256}]


def test_native_sbom_lists_every_linked_os_package_as_a_deb_purl(tmp_path: Path) -> None:
    document = json.loads(make_sbom(_artifact(tmp_path, _manifest())))

    purls = {c["purl"] for c in document["components"] if c.get("purl", "").startswith("pkg:deb/")}
    assert purls == {
        "pkg:deb/debian/libmunge2@0.5.16-1?distro=trixie",
        "pkg:deb/debian/libjson-c5@0.18%2Bds-1?distro=trixie",
    }


def test_rocky_packages_are_rpm_purls(tmp_path: Path) -> None:
    manifest = _manifest(toolchain="rockylinux9", os_name="Rocky Linux 9")

    document = json.loads(make_sbom(_artifact(tmp_path, manifest)))

    assert "pkg:rpm/rocky/libmunge2@0.5.16-1?distro=rockylinux9" in {c.get("purl") for c in document["components"]}


def test_spack_sbom_lists_every_spack_package_with_version_and_hash(tmp_path: Path) -> None:
    document = json.loads(make_sbom(_artifact(tmp_path, _manifest("spack"))))

    spack = {c["name"]: c for c in document["components"] if c.get("purl", "").startswith("pkg:generic/spack/")}
    assert set(spack) == {"munge", "json-c"}
    assert spack["munge"]["version"] == "0.5.15"
    assert spack["munge"]["properties"] == [{"name": "spack:hash", "value": "h1h2h3h"}]
    assert "properties" not in spack["json-c"]


def test_the_same_artifact_gets_the_same_sbom_bytes(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path, _manifest())

    assert make_sbom(artifact) == make_sbom(artifact)


def test_a_matching_sbom_has_no_problems(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path, _manifest())
    write_sbom(artifact)

    assert sbom_problems(artifact.path, SHA256, artifact.manifest) == []


def test_an_sbom_of_another_tarball_is_reported(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path, _manifest())
    write_sbom(artifact)

    problems = sbom_problems(artifact.path, "cd" * 32, artifact.manifest)

    assert any("sha256" in problem for problem in problems)


def test_an_sbom_missing_or_adding_an_os_package_is_reported(tmp_path: Path) -> None:
    manifest = _manifest()
    artifact = _artifact(tmp_path, manifest)
    write_sbom(artifact)
    changed = {**manifest, "dependencies": [{"name": "libmunge2", "version": "0.5.16-2"}]}

    problems = sbom_problems(artifact.path, SHA256, changed)

    assert (
        "OS package the artifact needs missing from the SBOM: pkg:deb/debian/libmunge2@0.5.16-2?distro=trixie"
        in problems
    )
    assert any("does not need" in problem and "libjson-c5" in problem for problem in problems)


def test_an_unreadable_sbom_is_reported(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path, _manifest())
    artifact.path.with_name(artifact.path.name + ".sbom.json").write_text("{not json")

    assert sbom_problems(artifact.path, SHA256, artifact.manifest)


def _production_manifest() -> dict[str, Any]:
    return {
        **_manifest(),
        "toolchain": {"name": "trixie", "os": "Debian 13", "base_image": "debian:trixie", "glibc": "2.41"},
        "runtime_packages": ["libjson-c5", "libmunge2", "libpmix2t64", "munge"],
        "os_inventory": [
            {"name": "munge", "version": "0.5.16-1", "license": "GPL-3.0-or-later"},
            {"name": "libpmix2t64", "version": "5.0.7-1"},
            {"name": "libmunge2", "version": "0.5.16-1", "license": "LGPL-3.0-or-later"},
        ],
        "patches": [
            {"name": "01-relocatable-plugin-dir.patch", "origin": "slurm-factory", "sha256": "1" * 64},
            {"name": "03-site-hotfix.patch", "origin": "site", "sha256": "2" * 64},
        ],
        "tool": {"name": "slurm-factory", "version": "9.9.9"},
    }


def test_the_sbom_lists_packages_run_without_linking_with_versions_and_licenses(tmp_path: Path) -> None:
    text = make_sbom(_artifact(tmp_path, _production_manifest()))
    _validate(text)
    components = {c["name"]: c for c in json.loads(text)["components"]}

    assert components["munge"]["purl"] == "pkg:deb/debian/munge@0.5.16-1?distro=trixie"
    assert components["munge"]["licenses"] == [{"license": {"id": "GPL-3.0-or-later"}}]
    assert components["libpmix2t64"]["version"] == "5.0.7-1"
    linked = {c["name"]: p["value"] for c in components.values() for p in c.get("properties", [])
              if p["name"] == "slurm-factory:linked"}  # fmt: skip
    assert linked == {"libjson-c5": "true", "libmunge2": "true", "libpmix2t64": "false", "munge": "false"}


def test_the_sbom_names_the_patches_the_os_and_the_tool(tmp_path: Path) -> None:
    document = json.loads(make_sbom(_artifact(tmp_path, _production_manifest())))
    components = {c["bom-ref"]: c for c in document["components"]}

    # The library keeps patches as a set; their file names carry the order they were applied in.
    patches = {patch["diff"]["url"]: patch["type"] for patch in components["slurm"]["pedigree"]["patches"]}
    assert patches == {
        "patches/01-relocatable-plugin-dir.patch": "unofficial",
        "patches/03-site-hotfix.patch": "backport",
    }
    properties = {p["name"]: p["value"] for p in components["slurm"]["properties"]}
    assert properties["slurm-factory:patch:03-site-hotfix.patch"] == f"site sha256:{'2' * 64}"
    assert components["slurm"]["licenses"] == [{"license": {"id": "GPL-2.0-or-later"}}]
    assert components["operating-system"]["type"] == "operating-system"
    assert (components["operating-system"]["name"], components["operating-system"]["version"]) == ("debian", "13")
    assert document["metadata"]["tools"]["components"][0]["name"] == "slurm-factory"
    assert document["metadata"]["tools"]["components"][0]["version"] == "9.9.9"


def test_a_runtime_package_missing_from_the_sbom_is_reported(tmp_path: Path) -> None:
    manifest = _production_manifest()
    artifact = _artifact(tmp_path, manifest)
    write_sbom(artifact)
    reported = sbom_problems(
        artifact.path, SHA256, {**manifest, "runtime_packages": [*manifest["runtime_packages"], "perl"]}
    )
    assert reported == ["OS package the artifact needs missing from the SBOM: pkg:deb/debian/perl?distro=trixie"]
