"""The CycloneDX SBOM of a package set (`sbom.json` beside the packages): the set, Slurm with its patches, each
.deb as a component, and the OS packages their Depends name, each package depending on what its Depends lists.
Like the tarball's SBOM, it is derived from the set alone: the same packages always get the same SBOM."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from pathlib import Path
from typing import Any

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from slurm_factory.sbom import slurm_component

SBOM_FILE = "sbom.json"
_SERIAL_NAMESPACE = uuid.UUID("0f3c2a51-7d1e-4a55-9a3e-6b2f1d4c8e27")
# `name (>= 1.0)`, `name:any`, one alternative of `a | b`.
_RELATION = re.compile(r"^\s*([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9-]+)?\s*(?:\(([^)]*)\))?\s*$")


def depended_on(depends: str) -> list[tuple[str, str]]:
    """(name, version constraint) of every package a Depends field names (each alternative of `a | b`)."""
    found = []
    for relation in depends.split(","):
        for alternative in relation.split("|"):
            match = _RELATION.match(alternative)
            if match:
                found.append((match[1], (match[2] or "").strip()))
    return found


def make_package_sbom(directory: Path, manifest: dict[str, Any], *, os_namespace: str, source_date_epoch: int) -> str:
    """The SBOM text of the set in `directory` described by its `manifest` (store.write_package_set's)."""
    sums = hashlib.sha256((directory / "SHA256SUMS").read_bytes()).hexdigest()
    codename, arch = str(manifest["codename"]), str(manifest["arch"])
    bom = Bom(serial_number=uuid.uuid5(_SERIAL_NAMESPACE, sums))
    bom.metadata.timestamp = dt.datetime.fromtimestamp(source_date_epoch, dt.UTC)
    bom.metadata.component = Component(
        name=f"slurm-smd {manifest['version']}",
        version=str(manifest["version"]),
        type=ComponentType.APPLICATION,
        bom_ref="package-set",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=sums)],
        properties=[
            Property(name="slurm-factory:build_id", value=str(manifest["build_id"])),
            Property(name="slurm-factory:subject", value="sha256 of SHA256SUMS"),
        ],
    )
    slurm = slurm_component(
        {
            "slurm": {
                "version": manifest["slurm_version"],
                "sha256": manifest["slurm_sha256"],
                "tag": manifest["slurm_tag"],
                "url": manifest["slurm_url"],
            },
            "patches": manifest.get("patches") or [],
        }
    )
    ours = {entry["package"]: _deb_component(entry, codename=codename, arch=arch) for entry in manifest["packages"]}
    system: dict[str, Component] = {}
    for entry in manifest["packages"]:
        for name, constraint in depended_on(entry.get("depends", "")):
            if name not in ours and name not in system:
                system[name] = _os_component(name, constraint, namespace=os_namespace, codename=codename)
    for component in (slurm, *ours.values(), *system.values()):
        bom.components.add(component)
    bom.register_dependency(bom.metadata.component, [slurm, *ours.values()])
    for entry in manifest["packages"]:
        names = {name for name, _ in depended_on(entry.get("depends", ""))}
        needed = [ours.get(name) or system[name] for name in sorted(names)]
        bom.register_dependency(ours[entry["package"]], needed)
    return JsonV1Dot6(bom).output_as_string(indent=2) + "\n"


def _deb_component(entry: dict[str, Any], *, codename: str, arch: str) -> Component:
    package_arch = "all" if entry["file"].endswith("_all.deb") else arch
    purl = PackageURL(
        type="deb",
        namespace="slurm-factory",
        name=entry["package"],
        version=entry["version"],
        qualifiers={"arch": package_arch, "distro": codename},
    )
    return Component(
        name=entry["package"],
        version=entry["version"],
        bom_ref=f"deb:{entry['package']}",
        purl=purl,
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=entry["sha256"])],
        properties=[Property(name="slurm-factory:file", value=entry["file"])],
    )


def _os_component(name: str, constraint: str, *, namespace: str, codename: str) -> Component:
    return Component(
        name=name,
        bom_ref=f"os:{name}",
        purl=PackageURL(type="deb", namespace=namespace, name=name, qualifiers={"distro": codename}),
        properties=[Property(name="slurm-factory:depends", value=constraint or "any version")],
    )
