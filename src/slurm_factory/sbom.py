"""The SBOM beside every artifact: `<artifact>.sbom.json`, CycloneDX 1.6 JSON written by `cyclonedx-python-lib`.

It is derived from the manifest's inventory: Slurm with its source sha256, its license and the patches applied to
it (pedigree); the operating system it was built for; every OS package a host of the tree needs — those it links
and those it runs without linking (munge, libpmix) — as deb or rpm purls with versions and licenses where the
package manager records them; for the Spack engine every Spack package with its version and hash; slurm-factory as
the tool. The serial number and timestamp derive from the artifact, so the same tarball always gets the same SBOM.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cyclonedx.model import ExternalReference, ExternalReferenceType, HashAlgorithm, HashType, Property, XsUri
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType, Diff, Patch, PatchClassification, Pedigree
from cyclonedx.model.license import DisjunctiveLicense
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from slurm_factory.artifact import Artifact, sidecar, write_text_atomically

SBOM_SUFFIX = ".sbom.json"
SPEC_VERSION = "1.6"
_SERIAL_NAMESPACE = uuid.UUID("5b0c39e6-4c40-4c8a-9d0c-1f0a5c3e9b11")
# The purl namespace of each toolchain OS (its manifest's `os`, first word).
_DISTRIBUTIONS = {"debian": ("deb", "debian"), "ubuntu": ("deb", "ubuntu"), "rocky": ("rpm", "rocky")}


def sbom_path(artifact: Path) -> Path:
    return sidecar(artifact, SBOM_SUFFIX)


def _os_purl_parts(manifest: dict[str, Any]) -> tuple[str, str, str]:
    """(purl type, namespace, distro qualifier) of the toolchain's OS."""
    toolchain = manifest.get("toolchain") or {}
    os_name = str(toolchain.get("os") or "")
    words = os_name.lower().split()
    kind, namespace = _DISTRIBUTIONS.get(words[0] if words else "", ("generic", "os"))
    return kind, namespace, str(toolchain.get("name") or "")


def os_package_purl(manifest: dict[str, Any], name: str, version: str | None) -> str:
    kind, namespace, distro = _os_purl_parts(manifest)
    return PackageURL(
        type=kind, namespace=namespace, name=name, version=version, qualifiers={"distro": distro}
    ).to_string()


# Slurm's license: GPL v2 or later, with SchedMD's permission to link against OpenSSL (its LICENSE file).
SLURM_LICENSE = "GPL-2.0-or-later"
SLURM_LICENSE_NOTE = "with the exception that permits linking with OpenSSL (see Slurm's LICENSE)"


@dataclass(frozen=True)
class OsPackage:
    """An OS package a host of the tree needs: linked by its ELF files, or only run or loaded (munge, libpmix)."""

    name: str
    version: str | None
    license: str | None
    linked: bool


def os_packages(manifest: dict[str, Any]) -> list[OsPackage]:
    """The linked packages (with the versions the build linked) and every other runtime package, with the version
    and license the build image had where it had one."""
    inventory = {entry["name"]: entry for entry in manifest.get("os_inventory") or [] if entry.get("name")}
    linked = {entry["name"]: entry["version"] for entry in manifest.get("dependencies") or []}
    names = sorted({*linked, *(manifest.get("runtime_packages") or [])})
    return [
        OsPackage(
            name,
            linked.get(name) or (inventory.get(name) or {}).get("version") or None,
            (inventory.get(name) or {}).get("license") or None,
            name in linked,
        )
        for name in names
    ]


def _patch(entry: dict[str, Any]) -> Patch:
    origin = str(entry.get("origin"))
    kind = PatchClassification.BACKPORT if origin == "site" else PatchClassification.UNOFFICIAL
    return Patch(type=kind, diff=Diff(url=XsUri(f"patches/{entry['name']}")))


def slurm_component(manifest: dict[str, Any]) -> Component:
    slurm = manifest["slurm"]
    patches = manifest.get("patches") or []
    return Component(
        name="slurm",
        version=str(slurm["version"]),
        type=ComponentType.APPLICATION,
        bom_ref="slurm",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=str(slurm["sha256"]))],
        purl=PackageURL(type="github", namespace="schedmd", name="slurm", version=f"slurm-{slurm['tag']}"),
        licenses=[DisjunctiveLicense(id=SLURM_LICENSE)],
        external_references=[ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(str(slurm["url"])))],
        pedigree=Pedigree(patches=[_patch(entry) for entry in patches]) if patches else None,
        properties=[
            Property(name="slurm-factory:license-note", value=SLURM_LICENSE_NOTE),
            *(
                Property(
                    name=f"slurm-factory:patch:{entry['name']}", value=f"{entry['origin']} sha256:{entry['sha256']}"
                )
                for entry in patches
            ),
        ],
    )


def _license(name: str | None) -> list[DisjunctiveLicense]:
    """A package manager's license text: an SPDX id where it is one, else its name."""
    if not name:
        return []
    try:
        return [DisjunctiveLicense(id=name)]
    except (ValueError, TypeError):
        return [DisjunctiveLicense(name=name)]


def _os_components(manifest: dict[str, Any]) -> list[Component]:
    return [
        Component(
            name=package.name,
            version=package.version,
            bom_ref=f"os:{package.name}",
            purl=PackageURL.from_string(os_package_purl(manifest, package.name, package.version)),
            licenses=_license(package.license),
            properties=[Property(name="slurm-factory:linked", value="true" if package.linked else "false")],
        )
        for package in os_packages(manifest)
    ]


def _operating_system(manifest: dict[str, Any]) -> Component:
    toolchain = manifest.get("toolchain") or {}
    words = str(toolchain.get("os") or "unknown").split()
    return Component(
        name=words[0].lower(),
        version=" ".join(words[1:]) or None,
        type=ComponentType.OPERATING_SYSTEM,
        bom_ref="operating-system",
        properties=[
            Property(name="slurm-factory:toolchain", value=str(toolchain.get("name"))),
            Property(name="slurm-factory:base-image", value=str(toolchain.get("base_image"))),
            Property(name="slurm-factory:base-image-id", value=str(toolchain.get("base_image_id") or "unknown")),
            Property(name="slurm-factory:glibc", value=str(toolchain.get("glibc"))),
        ],
    )


def _spack_components(manifest: dict[str, Any]) -> list[Component]:
    components = []
    for package in manifest.get("spack_packages") or []:
        if package["name"] == "slurm":
            continue
        spack_hash = package.get("hash")
        components.append(
            Component(
                name=package["name"],
                version=package["version"],
                bom_ref=f"spack:{package['name']}@{package['version']}/{spack_hash or ''}",
                purl=PackageURL(type="generic", namespace="spack", name=package["name"], version=package["version"]),
                properties=[Property(name="spack:hash", value=spack_hash)] if spack_hash else [],
            )
        )
    return components


def make_sbom(artifact: Artifact) -> str:
    """The CycloneDX JSON text of `artifact`."""
    manifest = artifact.manifest
    bom = Bom(serial_number=uuid.uuid5(_SERIAL_NAMESPACE, artifact.sha256))
    bom.metadata.timestamp = dt.datetime.fromtimestamp(int(manifest.get("source_date_epoch") or 0), dt.UTC)
    bom.metadata.component = Component(
        name=artifact.path.name,
        version=str(manifest["slurm"]["version"]),
        type=ComponentType.APPLICATION,
        bom_ref="artifact",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=artifact.sha256)],
        properties=[
            Property(name="slurm-factory:engine", value=str(manifest.get("engine"))),
            Property(name="slurm-factory:build_id", value=str(manifest.get("build_id"))),
        ],
    )
    tool = manifest.get("tool") or {}
    bom.metadata.tools.components.add(
        Component(
            name=str(tool.get("name") or "slurm-factory"),
            version=str(tool.get("version") or ""),
            type=ComponentType.APPLICATION,
            bom_ref="tool",
        )
    )
    # What Spack built (none for a native artifact, whose manifest lists no spack_packages).
    components = [
        slurm_component(manifest), _operating_system(manifest), *_os_components(manifest), *_spack_components(manifest)
    ]  # fmt: skip
    for component in components:
        bom.components.add(component)
    bom.register_dependency(bom.metadata.component, components)
    # Serial number and timestamp derive from the artifact: the same tarball always gets the same SBOM.
    return JsonV1Dot6(bom).output_as_string(indent=2) + "\n"


def write_sbom(artifact: Artifact) -> Path:
    path = sbom_path(artifact.path)
    write_text_atomically(path, make_sbom(artifact))
    return path


def sbom_problems(tarball: Path, sha256: str, manifest: dict[str, Any]) -> list[str]:
    """Where the SBOM beside `tarball` disagrees with the tarball (its sha256) and its embedded manifest."""
    path = sbom_path(tarball)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return [f"{path.name}: cannot read it as JSON ({error})"]
    problems = []
    if document.get("bomFormat") != "CycloneDX" or document.get("specVersion") != SPEC_VERSION:
        problems.append(f"{path.name} is not CycloneDX {SPEC_VERSION} JSON")
    subject = (document.get("metadata") or {}).get("component") or {}
    hashes = {entry.get("alg"): entry.get("content") for entry in subject.get("hashes") or []}
    if hashes.get("SHA-256") != sha256:
        problems.append(f"the SBOM describes sha256 {hashes.get('SHA-256')}, the tarball is {sha256}")
    components = {entry.get("bom-ref"): entry for entry in document.get("components") or []}
    slurm = components.get("slurm") or {}
    slurm_hashes = {entry.get("alg"): entry.get("content") for entry in slurm.get("hashes") or []}
    if (
        slurm.get("version") != manifest["slurm"]["version"]
        or slurm_hashes.get("SHA-256") != manifest["slurm"]["sha256"]
    ):
        problems.append("the SBOM's Slurm component is not the release and source sha256 of the manifest")
    listed = {entry.get("purl") for entry in components.values() if str(entry.get("purl", "")).startswith("pkg:")}
    expected = {os_package_purl(manifest, package.name, package.version) for package in os_packages(manifest)}
    for purl in sorted(expected - listed):
        problems.append(f"OS package the artifact needs missing from the SBOM: {purl}")
    kind, _, _ = _os_purl_parts(manifest)
    for purl in sorted(p for p in listed - expected if p.startswith(f"pkg:{kind}/")):
        problems.append(f"the SBOM lists an OS package the artifact does not need: {purl}")
    return problems
