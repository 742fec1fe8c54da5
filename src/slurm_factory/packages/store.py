"""The stored package set of one build id: `builds/packages/<id>/` with the .deb files, `SHA256SUMS`, the
lintian report, `manifest.json` and `sbom.json`; `builds/slurm-<flavor>-deb` names the newest set of a request."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slurm_factory import __version__
from slurm_factory.exceptions import BuildError
from slurm_factory.packages.sbom import SBOM_FILE, make_package_sbom
from slurm_factory.plan.model import PackagePlan

SUMS_FILE = "SHA256SUMS"
MANIFEST_FILE = "manifest.json"
LINTIAN_FILE = "lintian.txt"
PACKAGES_DIR = "packages"


@dataclass(frozen=True)
class PackageFile:
    package: str
    version: str
    file: str
    sha256: str
    size: int
    # The Depends field, as dpkg-shlibdeps and debian/control made it.
    depends: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "package": self.package,
            "version": self.version,
            "file": self.file,
            "sha256": self.sha256,
            "size": self.size,
            "depends": self.depends,
        }


@dataclass(frozen=True)
class PackageSet:
    directory: Path
    version: str
    files: tuple[PackageFile, ...]
    manifest: dict[str, Any]

    @property
    def debs(self) -> list[Path]:
        return [self.directory / entry.file for entry in self.files]

    @property
    def size(self) -> int:
        return sum(entry.size for entry in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "version": self.version,
            "size": self.size,
            "packages": [entry.to_json() for entry in self.files],
        }


def contract_name(builds_dir: Path, plan: PackagePlan) -> Path:
    """`builds/slurm-<series>-<toolchain>[-gpu]-deb`: the request's newest package set."""
    return builds_dir / f"slurm-{plan.request.flavor}-deb"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_package_file_name(name: str) -> bool:
    """A plain `.deb` file name: no directory part, nothing a path could climb out of the set's directory with."""
    return name.endswith(".deb") and name == Path(name).name and not name.startswith(".") and "\x00" not in name


def find(directory: Path) -> PackageSet | None:
    """The stored set, when it is complete and every file still has the bytes its manifest records."""
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    files = tuple(PackageFile(**entry) for entry in manifest["packages"])
    if not all(is_package_file_name(entry.file) for entry in files):
        return None
    for entry in files:
        path = directory / entry.file
        if not path.is_file() or path.stat().st_size != entry.size or _sha256(path) != entry.sha256:
            return None
    return PackageSet(directory, manifest["version"], files, manifest)


def _package_rows(meta: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """(package, version, file, depends) of each line the build script wrote (depends may be absent)."""
    rows = [line.split("\t") for line in meta.get("packages.tsv", "").splitlines() if line.strip()]
    return [(row[0], row[1], row[2], row[3] if len(row) > 3 else "") for row in rows if len(row) >= 3]


def write_package_set(
    plan: PackagePlan, tree_tar: Path, meta: dict[str, str], *, durations: dict[str, float]
) -> PackageSet:
    """Unpack the container's output (only its .deb files) into the stored directory, atomically."""
    destination = plan.artifact_path
    partial = destination.with_name(f".{destination.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with tarfile.open(tree_tar) as archive:
        for member in archive.getmembers():
            name = Path(member.name).name
            if member.isfile() and name.endswith(".deb"):
                if (partial / name).exists():  # two files of one name: which one was listed is unknowable
                    raise BuildError(f"the package build produced {name} twice", log_path=plan.log_path)
                source = archive.extractfile(member)
                assert source is not None
                with source, (partial / name).open("wb") as target:
                    shutil.copyfileobj(source, target)
    rows = _package_rows(meta)
    listed = [row[2] for row in rows]
    twice = sorted({name for name in listed if listed.count(name) > 1})
    if twice:
        raise BuildError(f"the package build listed {twice[0]} twice", log_path=plan.log_path)
    files = []
    for package, version, name, depends in sorted(rows):
        if not is_package_file_name(name):
            raise BuildError(f"the package build listed {name!r}, not a .deb file name", log_path=plan.log_path)
        path = partial / name
        if not path.is_file():
            raise BuildError(f"the package build listed {name} but did not produce it", log_path=plan.log_path)
        files.append(PackageFile(package, version, name, _sha256(path), path.stat().st_size, depends))
    if not files:
        raise BuildError("the package build produced no .deb file", log_path=plan.log_path)
    (partial / SUMS_FILE).write_text("".join(f"{entry.sha256}  {entry.file}\n" for entry in files), encoding="utf-8")
    (partial / LINTIAN_FILE).write_text(meta.get("lintian.txt", ""), encoding="utf-8")
    manifest = {
        "kind": "deb",
        "build_id": plan.build_id,
        "slurm_version": plan.request.slurm.version,
        "slurm_sha256": plan.request.slurm.sha256,
        "slurm_tag": plan.request.slurm.tag,
        "slurm_url": plan.request.slurm.url,
        "toolchain": plan.request.toolchain.name,
        "codename": plan.request.toolchain.codename,
        "arch": plan.request.arch.value,
        "version": plan.version,
        "package_release": plan.request.package_release,
        "packages": [entry.to_json() for entry in files],
        "lintian": lintian_summary(meta.get("lintian.txt", "")),
        "patches": [
            {"name": patch.name, "origin": patch.origin, "sha256": patch.sha256} for patch in plan.request.patches
        ],
        "built_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "durations": durations,
        "tool_version": __version__,
    }
    (partial / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os_namespace = plan.request.toolchain.os.split()[0].lower()
    sbom = make_package_sbom(
        partial, manifest, os_namespace=os_namespace, source_date_epoch=plan.request.slurm.source_date_epoch
    )
    (partial / SBOM_FILE).write_text(sbom, encoding="utf-8")
    shutil.rmtree(destination, ignore_errors=True)
    os.replace(partial, destination)
    return PackageSet(destination, plan.version, tuple(files), manifest)


def lintian_summary(report: str) -> dict[str, int]:
    """lintian's tags by severity (E, W, I, P, X; O: overridden), as counts; N lines (the overrides' reasons) are
    not counted."""
    counts: dict[str, int] = {}
    for line in report.splitlines():
        if len(line) > 2 and line[1] == ":" and line[0] in "EWIPXO":
            counts[line[0]] = counts.get(line[0], 0) + 1
    return counts


def link_contract_name(builds_dir: Path, plan: PackagePlan) -> Path:
    """Point `builds/slurm-<flavor>-deb` at the stored set (relative, so the builds directory can move)."""
    link = contract_name(builds_dir, plan)
    partial = link.with_name(f".{link.name}.link")
    partial.unlink(missing_ok=True)
    partial.symlink_to(os.path.relpath(plan.artifact_path, builds_dir))
    os.replace(partial, link)
    return link


def stored_sets(builds_dir: Path) -> list[tuple[PackageSet, bool]]:
    """Every complete package set in `builds/packages/`, and whether a `slurm-<flavor>-deb` name points at it."""
    current = {link.resolve() for link in builds_dir.glob("slurm-*-deb") if link.is_symlink()}
    found = []
    for directory in sorted((builds_dir / PACKAGES_DIR).glob("*")):
        package_set = find(directory) if directory.is_dir() and not directory.name.startswith(".") else None
        if package_set is not None:
            found.append((package_set, directory.resolve() in current))
    return found


def verified(package_set: PackageSet) -> bool:
    """A passed verification report (packages/verify_apt.py) is in the set's directory."""
    report = package_set.directory / "verify.json"
    try:
        return bool(json.loads(report.read_text(encoding="utf-8")).get("passed"))
    except (OSError, ValueError):
        return False
