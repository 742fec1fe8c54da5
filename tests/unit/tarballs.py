"""Artifact-shaped tarballs for verification tests: a valid manifest plus whatever members a test needs, hostile
ones included (absolute names, links, devices, modes), written member by member as a tar header says."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import struct
import subprocess
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from slurm_factory.catalog.plugins import expected_plugins

ROOT = "slurm-24.11.5-trixie"
PREFIX = f"/opt/slurm-factory-build/{ROOT}"
SPACK_VIEW = "/opt/slurm-factory/spack/view"
ARTIFACT_NAME = "slurm-24.11-trixie-software.tar.gz"


def manifest(**overrides: Any) -> dict[str, Any]:
    return {
        "tool": {"name": "slurm-factory"},
        "toolchain": {"name": "trixie", "base_image": "debian:trixie"},
        "slurm": {"version": "24.11.5", "series": "24.11"},
        "build_prefix": PREFIX,
        "build_paths": [PREFIX, SPACK_VIEW],
        "gpu": False,
        **overrides,
    }


@dataclass(frozen=True)
class Member:
    """One tar member: `kind` is a tarfile type (REGTYPE, SYMTYPE, LNKTYPE, CHRTYPE, FIFOTYPE, DIRTYPE)."""

    name: str
    data: bytes = b""
    kind: bytes = tarfile.REGTYPE
    link: str = ""
    mode: int = 0o644

    def info(self) -> tarfile.TarInfo:
        info = tarfile.TarInfo(self.name)
        info.type = self.kind
        info.linkname = self.link
        info.mode = self.mode
        info.size = len(self.data) if self.kind == tarfile.REGTYPE else 0
        return info


def plugin_members() -> list[Member]:
    return [Member(f"{ROOT}/lib/slurm/{name}", b"plugin") for name in expected_plugins("24.11", gpu=False)]


def tar_bytes(members: list[Member]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for member in members:
            archive.addfile(member.info(), io.BytesIO(member.data))
    return buffer.getvalue()


def record(member: Member) -> bytes:
    """A member's header and data as they sit in a tar stream (no end-of-archive blocks)."""
    padding = -len(member.data) % tarfile.BLOCKSIZE
    return member.info().tobuf(format=tarfile.GNU_FORMAT) + member.data + bytes(padding)


def manifest_member(document: dict[str, Any] | bytes | None = None) -> Member:
    data = document if isinstance(document, bytes) else json.dumps(document or manifest()).encode()
    return Member(f"{ROOT}/manifest.json", data)


def write_artifact(directory: Path, members: list[Member], document: dict[str, Any] | bytes | None = None) -> Path:
    """The manifest first (as slurm-factory writes it), then `members`."""
    path = directory / ARTIFACT_NAME
    path.write_bytes(gzip.compress(tar_bytes([Member(ROOT, kind=tarfile.DIRTYPE, mode=0o755),
                                              manifest_member(document), *members])))  # fmt: skip
    return path


def write_gzip_bomb(directory: Path, kind: bytes = tarfile.REGTYPE, gib: int = 1) -> Path:
    """An artifact whose second header (a member, or a pax or GNU long-name header: `kind`) declares `gib` GiB of
    zeros, as one gzip stream of ~1 MB: every MiB of zeros is deflated after a full flush, so one compressed block
    serves for all of them; the manifest comes first."""
    bomb = tarfile.TarInfo(f"{ROOT}/lib/zeros")
    bomb.type = kind
    bomb.size = gib * 1024**3
    records = (Member(ROOT, kind=tarfile.DIRTYPE, mode=0o755), manifest_member())
    prefix = b"".join(record(member) for member in records) + bomb.tobuf(format=tarfile.GNU_FORMAT)
    mib, end = bytes(1024**2), bytes(2 * tarfile.BLOCKSIZE)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    start = deflate.compress(prefix) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(mib) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(prefix)
    for _ in range(gib * 1024):
        crc = zlib.crc32(mib, crc)
    crc = zlib.crc32(end, crc)
    size = len(prefix) + bomb.size + len(end)
    path = directory / ARTIFACT_NAME
    with path.open("wb") as stream:
        stream.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03" + start)  # gzip header: deflate, no name
        for _ in range(gib * 1024):
            stream.write(block)
        stream.write(deflate.compress(end) + deflate.flush())
        stream.write(struct.pack("<II", crc, size & 0xFFFFFFFF))
    return path


def shared_object(tmp_path: Path, rpath: str) -> bytes:
    """A real ELF shared object (compiled with gcc) whose RUNPATH is `rpath`."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to make a real ELF file")
    source = tmp_path / "x.c"
    source.write_text("int slurm_factory_probe(void) { return 1; }\n")
    output = tmp_path / "x.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(output), str(source), f"-Wl,-rpath,{rpath}",
                    "-Wl,--enable-new-dtags"], check=True)  # fmt: skip
    return output.read_bytes()


HARDENED_SOURCE = """#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) { char name[64]; strcpy(name, argv[0]); printf("%s %d\\n", name, argc); return 0; }
"""


def compiled_program(tmp_path: Path, *flags: str) -> bytes:
    """A real ELF program compiled with gcc and `flags` (the release build's hardening, or none)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to make a real ELF file")
    source = tmp_path / "program.c"
    source.write_text(HARDENED_SOURCE)
    output = tmp_path / f"program-{abs(hash(flags))}"
    subprocess.run(["gcc", "-o", str(output), str(source), "-Wl,-rpath,$ORIGIN", *flags], check=True)
    return output.read_bytes()


RELEASE_FLAGS = ("-O2", "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2", "-Wl,-z,relro")


def hardened_members(tmp_path: Path, *extra_flags: str) -> list[Member]:
    """The daemons and libslurmfull, each a program built with the release build's hardening."""
    from slurm_factory.verify.static import HARDENED_FILES

    program = compiled_program(tmp_path, *RELEASE_FLAGS, *extra_flags)
    return [Member(f"{ROOT}/{path}", program, mode=0o755) for path in HARDENED_FILES]
