"""The artifact: one tarball with a single top-level directory, plus `.sha256` and `.manifest.json` beside it, and
the `-debug.tar.gz` companion holding the debug symbols its stripped files point to.

One writer for every engine: it re-roots the installed tree an engine copied out of its container, adds the
generated files (modulefile, example configuration, unit templates, setup script, manifest.json), moves `lib/debug/`
into the companion (same top-level directory: unpacked over the tree, gdb finds the symbols), and publishes the
result into `builds/` atomically — a half-written tarball never carries the final name.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO, Any

from slurm_factory import __version__
from slurm_factory.catalog import Toolchain
from slurm_factory.catalog.build import release_flags
from slurm_factory.engines import engine_for
from slurm_factory.plan import BuildPlan, CompilerPlan, PlanFile
from slurm_factory.plan.spack import compiler_publishes_elsewhere
from slurm_factory.request import BuildRequest
from slurm_factory.source import sha256_of

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = 1
# zlib level 6: within a few percent of level 9 in size at a fraction of the time.
GZIP_LEVEL = 6
# What describes one particular tarball and must go when it is replaced.
STALE_SIDECARS = (".asc", ".verify.json", ".sbom.json", ".sbom.json.asc")
# The debug symbols of the stripped tree: `lib/debug/.build-id/xx/yyyy.debug`, in their own tarball.
DEBUG_DIRECTORY = "lib/debug"
SOFTWARE_SUFFIX = "-software.tar.gz"
DEBUG_SUFFIX = "-debug.tar.gz"
# What sits beside a debug companion: its checksum and, once signed, its signature.
COMPANION_SIDECARS = (".sha256", ".asc")


@dataclass(frozen=True)
class Artifact:
    path: Path
    sha256: str
    size: int
    manifest: dict[str, Any]

    @property
    def checksum_path(self) -> Path:
        return sidecar(self.path, ".sha256")

    @property
    def manifest_path(self) -> Path:
        return sidecar(self.path, ".manifest.json")


def sidecar(artifact: Path, suffix: str) -> Path:
    """`slurm-…-software.tar.gz` → `slurm-…-software.tar.gz<suffix>`."""
    return artifact.with_name(artifact.name + suffix)


def debug_companion_name(artifact_name: str) -> str:
    """`slurm-24.11-trixie-software.tar.gz` → `slurm-24.11-trixie-debug.tar.gz`."""
    return artifact_name.removesuffix(SOFTWARE_SUFFIX) + DEBUG_SUFFIX


def debug_companion(artifact: Path) -> Path:
    return artifact.with_name(debug_companion_name(artifact.name))


def _lines(text: str | None) -> list[str]:
    return [line for line in (text or "").splitlines() if line.strip()]


def _packages(tsv: str | None) -> list[dict[str, str]]:
    packages = []
    for line in _lines(tsv):
        name, version, spack_hash, *_ = [*line.split("\t"), "", ""]
        packages.append({"name": name, "version": version, **({"hash": spack_hash} if spack_hash else {})})
    return packages


def _os_inventory(tsv: str | None) -> list[dict[str, str]]:
    inventory = []
    for line in _lines(tsv):
        name, version, license_name, *_ = [*line.split("\t"), "", ""]
        inventory.append({"name": name, "version": version, **({"license": license_name} if license_name else {})})
    return inventory


def build_paths(plan: BuildPlan) -> list[str]:
    """Every container path a relocated tree must not name: the install prefix and the engine's own."""
    return engine_for(plan.request.engine).build_paths(plan)


def _os_externals(meta: dict[str, str]) -> list[dict[str, Any]]:
    """What a Spack build took from the toolchain OS (`--os-packages`), as its detection step recorded it."""
    text = meta.get("os-externals.json")
    loaded = json.loads(text) if text else []
    return loaded if isinstance(loaded, list) else []


def _runtime_packages(
    request: BuildRequest, dependencies: list[dict[str, str]], meta: dict[str, str], *, externals: list[dict[str, Any]]
) -> list[str]:
    """What a host needs installed: the packages the tree links against, plus the OS packages it loads at run time
    without linking (munge's daemon, libpmix dlopened by mpi_pmix), which the engine knows."""
    linked = {dependency["name"] for dependency in dependencies}
    return sorted(linked | engine_for(request.engine).runtime_packages(request, meta, externals))


def _toolchain_record(toolchain: Toolchain, base_image: str) -> dict[str, str]:
    return {
        "name": toolchain.name,
        "os": toolchain.os,
        "base_image": base_image,
        "family": toolchain.family,
        "glibc": toolchain.glibc,
    }


def build_manifest(plan: BuildPlan, meta: dict[str, str], *, base_image_id: str | None = None) -> dict[str, Any]:
    """What was built, from what, how and against which dependency versions. `base_image_id`: the id of the base
    image the toolchain image was built from (base_images.py), when it is known."""
    request = plan.request
    dependencies = _packages(meta.get("runtime-packages.tsv"))
    externals = _os_externals(meta)
    engine_fields = engine_for(request.engine).manifest_fields(request)
    return {
        "schema": MANIFEST_SCHEMA,
        "artifact": request.artifact_filename,
        "root": request.artifact_root,
        "build_id": plan.build_id,
        "slurm": {
            "version": request.slurm.version,
            "series": request.slurm.series,
            "tag": request.slurm.tag,
            "sha256": request.slurm.sha256,
            "url": request.slurm.url,
        },
        "toolchain": {
            **_toolchain_record(request.toolchain, request.base_image),
            "base_image_id": base_image_id,
            "compiler": (meta.get("compiler.txt") or "").strip(),
        },
        "engine": request.engine.value,
        # The machine the artifact runs on, and how it was built for it (cross: by the OS's cross compiler).
        "arch": request.arch.value,
        "cross_compiled": request.cross,
        "built_under_emulation": request.emulated,
        "spack_compiler": engine_fields["spack_compiler"],
        "gpu": request.gpu,
        "os_packages": engine_fields["os_packages"],
        "os_externals": externals,
        "spack_modules": engine_fields["spack_modules"],
        "build_prefix": str(plan.container.install_prefix),
        "build_paths": build_paths(plan),
        "configure_options": _lines(meta.get("configure-options.txt")),
        "dependencies": dependencies,
        "runtime_packages": _runtime_packages(request, dependencies, meta, externals=externals),
        # Each OS package the build image had of those: its version and license (the SBOM lists them).
        "os_inventory": _os_inventory(meta.get("os-inventory.tsv")),
        "spack_specs": _lines(meta.get("spack-specs.txt")),
        "spack_packages": _packages(meta.get("spack-packages.tsv")),
        "plugins": _lines(meta.get("plugins.txt")),
        "host_libraries": _lines(meta.get("host-libraries.txt")),
        # The release build's flags (catalog/data/build.yaml), the patches in the order applied, the contribs.
        "build_flags": release_flags(request.arch.value, request.compiler_major).to_json(),
        "patches": [patch.to_json() for patch in request.patches],
        "contribs": _lines(meta.get("contribs.txt")),
        # Filled in by the writer: the -debug companion's name, sha256, size and number of debug files.
        "debug_symbols": None,
        # Not the time of the build: the tarball must be the same bytes whenever it is built (see `.build.json`).
        "source_date_epoch": plan.source_date_epoch,
        "tool": {"name": "slurm-factory", "version": __version__},
        "verified": None,
    }


def build_compiler_manifest(plan: CompilerPlan, meta: dict[str, str]) -> dict[str, Any]:
    """What `build-compiler` made: the GCC, the toolchain that built it, the Spack packages and the mirror."""
    request = plan.request
    return {
        "schema": MANIFEST_SCHEMA,
        "artifact": request.artifact_filename,
        "root": request.artifact_root,
        "build_id": plan.build_id,
        "compiler": {"name": "gcc", "version": request.gcc_version, "banner": (meta.get("compiler.txt") or "").strip()},
        "toolchain": {
            **_toolchain_record(request.toolchain, request.base_image),
            "built_with": f"gcc@{request.toolchain.spack.compiler}",
        },
        "engine": "spack",
        "build_prefix": str(plan.container.install_prefix),
        "spack_packages": _packages(meta.get("spack-packages.tsv")),
        "pushed_to": ["local buildcache (~/.slurm-factory/spack-buildcache)"]
        + ([str(request.publish_url)] if compiler_publishes_elsewhere(request) else []),
        # Not the time of the build: the tarball must be the same bytes whenever it is built (see `.build.json`).
        "source_date_epoch": plan.source_date_epoch,
        "tool": {"name": "slurm-factory", "version": __version__},
    }


def _reroot(name: str, root: str) -> str:
    _, _, rest = name.partition("/")
    return f"{root}/{rest}" if rest else root


def _normalized(info: tarfile.TarInfo, mtime: int) -> tarfile.TarInfo:
    """Nothing of the machine, the user or the time of the build: root/root, 0755 or 0644 (0777 for symlinks), the
    release's SOURCE_DATE_EPOCH as every mtime, no PAX extras (atime, ctime, xattrs)."""
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = mtime
    info.pax_headers = {}
    info.devmajor = info.devminor = 0
    if info.issym():
        info.mode = 0o777
    elif info.isdir() or info.mode & 0o111:
        info.mode = 0o755
    else:
        info.mode = 0o644
    return info


def _file_info(name: str, size: int, mode: int, *, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    return _normalized(info, mtime)


def _directory_info(name: str, mtime: int) -> tarfile.TarInfo:
    info = _file_info(name, 0, 0o755, mtime=mtime)
    info.type = tarfile.DIRTYPE
    return info


def _no_data() -> None:
    return None


@dataclass(frozen=True)
class _Member:
    info: tarfile.TarInfo
    data: Callable[[], IO[bytes] | None]


def _tree_members(source: tarfile.TarFile, root: str, mtime: int) -> dict[str, _Member]:
    """The container's tree under the artifact root, by name."""
    members = {}
    for member in source.getmembers():
        member.name = _reroot(member.name, root)
        if member.islnk():
            member.linkname = _reroot(member.linkname, root)
        members[member.name] = _Member(
            _normalized(member, mtime),
            partial(source.extractfile, member) if member.isfile() else _no_data,
        )
    return members


def _generated_members(root: str, files: dict[str, PlanFile], known: set[str], *, mtime: int) -> dict[str, _Member]:
    members = {}
    for relative, plan_file in files.items():
        path = PurePosixPath(root, relative)
        for parent in path.parents[:-1]:
            if str(parent) not in known:
                members[str(parent)] = _Member(_directory_info(str(parent), mtime), _no_data)
        data = plan_file.content.encode()
        members[str(path)] = _Member(
            _file_info(str(path), len(data), plan_file.mode, mtime=mtime), partial(io.BytesIO, data)
        )
    return members


def _write_sorted(out: tarfile.TarFile, members: dict[str, _Member]) -> None:
    """Sorted by name, hard links after everything else so their targets always come first."""
    ordered = sorted(members.values(), key=lambda member: (member.info.islnk(), member.info.name))
    for member in ordered:
        out.addfile(member.info, member.data())


@contextmanager
def atomic_writer(destination: Path) -> Iterator[IO[bytes]]:
    """A temporary file beside `destination`, renamed onto it only when the block completes."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary_name = tempfile.mkstemp(prefix=f".{destination.name}.", dir=destination.parent)
    temporary = Path(temporary_name)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        temporary.chmod(0o644)
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomically(destination: Path, text: str) -> None:
    with atomic_writer(destination) as stream:
        stream.write(text.encode())


def manifest_text(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, sort_keys=False) + "\n"


@contextmanager
def _tarball_writer(destination: Path) -> Iterator[tarfile.TarFile]:
    """A reproducible .tar.gz written atomically: no file name and no time in the gzip header, PAX members."""
    with (
        atomic_writer(destination) as stream,
        gzip.GzipFile(filename="", fileobj=stream, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w|", format=tarfile.PAX_FORMAT) as out,
    ):
        yield out


def _split_debug_members(members: dict[str, _Member], root: str) -> dict[str, _Member]:
    """Take `<root>/lib/debug` and everything under it out of `members`, with the directories above it, which
    the companion needs too (it unpacks over the tree)."""
    debug_top = f"{root}/{DEBUG_DIRECTORY}"
    debug = {name: members.pop(name) for name in list(members) if name == debug_top or name.startswith(debug_top + "/")}
    if debug:
        for parent in PurePosixPath(debug_top).parents[:-1]:
            if str(parent) in members:
                debug[str(parent)] = members[str(parent)]
    return debug


def _write_checksum(path: Path) -> str:
    digest = sha256_of(path)
    write_text_atomically(sidecar(path, ".sha256"), f"{digest}  {path.name}\n")
    return digest


def write_artifact(
    plan: BuildPlan | CompilerPlan, tree_tar: Path, manifest: dict[str, Any], *, destination: Path | None = None
) -> Artifact:
    """Assemble the tarball from the engine's tree and the plan's generated files; write it and its sidecars. The
    tree's debug symbols go into the companion first, so the manifest inside the tarball names its sha256."""
    root = plan.artifact_root
    destination = destination or plan.artifact_path
    epoch = plan.source_date_epoch
    companion = debug_companion(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    for stale in STALE_SIDECARS:  # a signature or report of the previous tarball must not sit beside the new one
        sidecar(destination, stale).unlink(missing_ok=True)
    for path in (companion, *(sidecar(companion, suffix) for suffix in COMPANION_SIDECARS)):
        path.unlink(missing_ok=True)
    with tarfile.open(tree_tar, mode="r:") as source:
        members = _tree_members(source, root, epoch)
        debug = _split_debug_members(members, root)
        if debug:
            with _tarball_writer(companion) as out:
                _write_sorted(out, debug)
            manifest = {
                **manifest,
                "debug_symbols": {
                    "artifact": companion.name,
                    "sha256": _write_checksum(companion),
                    "size": companion.stat().st_size,
                    "files": sum(1 for member in debug.values() if member.info.isfile()),
                },
            }
        generated = {**plan.artifact_files, MANIFEST_NAME: PlanFile(manifest_text(manifest))}
        known = {name for name, member in members.items() if member.info.isdir()}
        members.update(_generated_members(root, generated, known, mtime=epoch))
        with _tarball_writer(destination) as out:
            _write_sorted(out, members)
    artifact = Artifact(destination, _write_checksum(destination), destination.stat().st_size, manifest)
    write_text_atomically(artifact.manifest_path, manifest_text(manifest))
    return artifact
