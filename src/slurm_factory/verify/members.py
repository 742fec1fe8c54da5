"""Scan an untrusted tarball's members before anything reads their data or unpacks them.

`verify` exists for artifacts from elsewhere, so the tarball is hostile until this scan says otherwise. One streamed
pass over the headers (data is skipped, never held) finds what could write outside the directory it is unpacked
into or smuggle privileges: absolute names, `..` components, members outside the single root directory, symlinks
that resolve outside it, hard links, device files and FIFOs, setuid/setgid bits. Sizes are capped per member, in
total and in count: a member whose header declares more than the cap stops the scan at once, before its data is
decompressed, so a small gzip bomb costs nothing. Every finding names the member.
"""

from __future__ import annotations

import gzip
import stat
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from slurm_factory.artifact import MANIFEST_NAME

MiB = 1024 * 1024
# The largest file of a real artifact is a few tens of MB (libslurmfull.so, a Spack view's libpython); the caps
# leave a wide margin and still bound the time and memory one verification may spend.
MEMBER_SIZE_CAP = 512 * MiB
TOTAL_SIZE_CAP = 8 * 1024 * MiB
MEMBER_COUNT_CAP = 200_000
MANIFEST_SIZE_CAP = 4 * MiB
# tarfile reads a pax or GNU long-name header whole into memory before it yields the member it describes: its
# declared size is checked first (real ones are a few hundred bytes).
HEADER_SIZE_CAP = 1 * MiB
_EXTENSION_HEADERS = {
    tarfile.GNUTYPE_LONGNAME: "GNU long-name",
    tarfile.GNUTYPE_LONGLINK: "GNU long-link",
    tarfile.XHDTYPE: "pax",
    tarfile.XGLTYPE: "pax global",
    tarfile.SOLARIS_XHDTYPE: "Solaris pax",
}
# Paths (relative to the root) allowed to carry setuid/setgid bits. Slurm's tree has none: neither the native nor
# the Spack engine installs a setuid program.
SETUID_ALLOWED: frozenset[str] = frozenset()
SYMLINK_HOPS = 40
_SHOWN_NAME = 160
_SHOWN_FINDINGS = 50


@dataclass
class MemberScan:
    """What the scan learned: the root directory, the manifest's bytes and every finding (empty: safe)."""

    root: str | None = None
    manifest: bytes | None = None
    findings: list[str] = field(default_factory=list)
    members: int = 0
    total_bytes: int = 0
    stopped: bool = False  # a cap was hit: the rest of the tarball was not read

    @property
    def safe(self) -> bool:
        return not self.findings

    def shown_findings(self) -> list[str]:
        extra = len(self.findings) - _SHOWN_FINDINGS
        return self.findings[:_SHOWN_FINDINGS] + ([f"… and {extra} more"] if extra > 0 else [])


class NotATarball(Exception):
    """The file is not a readable gzip-compressed tar at all (its first header could not be read)."""


class _Stop(Exception):
    """A cap was hit or a header is unsafe to parse: stop reading the stream (the message is the finding)."""


class CappedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses, before tarfile reads them, extension headers over the cap and GNU sparse headers
    (whose chained extension blocks tarfile would also read without limit)."""

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        kind = _EXTENSION_HEADERS.get(self.type)
        if kind is not None and self.size > HEADER_SIZE_CAP:
            raise _Stop(f"a {kind} header declares {self.size} bytes, over the cap of {HEADER_SIZE_CAP} bytes")
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise _Stop(f"{shown(self.name)}: sparse file")
        return super()._proc_member(archive)  # type: ignore[misc, no-any-return]


class _Escape(Exception):
    """A symlink resolves outside the root (or loops)."""


def shown(name: str) -> str:
    """A member name as printed in a finding: control characters escaped, very long names shortened."""
    text = name.encode("unicode_escape", errors="backslashreplace").decode("ascii")
    return text if len(text) <= _SHOWN_NAME else f"{text[:_SHOWN_NAME]}…"


def _parts(name: str) -> list[str]:
    return [part for part in name.split("/") if part not in ("", ".")]


def _type_problem(member: tarfile.TarInfo) -> str | None:
    if member.islnk():
        return f"hard link to {shown(member.linkname)} (hard links are not allowed)"
    if member.ischr() or member.isblk():
        return "device file"
    if member.isfifo():
        return "FIFO"
    if member.issparse():
        return "sparse file"
    if not (member.isreg() or member.isdir() or member.issym()):
        return f"unsupported member type {member.type!r}"
    return None


def _member_problems(member: tarfile.TarInfo, parts: list[str]) -> list[str]:
    problems = []
    if member.name.startswith("/"):
        problems.append("absolute path")
    if ".." in parts:
        problems.append("'..' component in its path")
    type_problem = _type_problem(member)
    if type_problem:
        problems.append(type_problem)
    if member.mode & (stat.S_ISUID | stat.S_ISGID) and "/".join(parts[1:]) not in SETUID_ALLOWED:
        problems.append(f"setuid/setgid mode {member.mode:04o}")
    return problems


class _Scanner:
    """Accumulates one pass over the members; `finish` checks what needs the whole tarball (root, symlinks)."""

    def __init__(self) -> None:
        self.scan = MemberScan()
        self.tops: dict[str, list[str]] = {}
        self.symlinks: dict[tuple[str, ...], str] = {}
        self.paths: list[tuple[str, ...]] = []
        self.non_directory_roots: list[str] = []

    def add(self, member: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        scan = self.scan
        scan.members += 1
        if scan.members > MEMBER_COUNT_CAP:
            raise _Stop(f"more than {MEMBER_COUNT_CAP} members")
        if member.size > MEMBER_SIZE_CAP:
            raise _Stop(f"{shown(member.name)}: declares {member.size} bytes, over the cap of {MEMBER_SIZE_CAP} bytes")
        scan.total_bytes += member.size
        if scan.total_bytes > TOTAL_SIZE_CAP:
            raise _Stop(f"{shown(member.name)}: the members exceed the total cap of {TOTAL_SIZE_CAP} bytes")
        parts = _parts(member.name)
        scan.findings.extend(f"{shown(member.name)}: {problem}" for problem in _member_problems(member, parts))
        if not parts:
            return
        self.tops.setdefault(parts[0], []).append(member.name)
        self.paths.append(tuple(parts))
        if len(parts) == 1 and not member.isdir():
            self.non_directory_roots.append(member.name)
        if member.issym():
            self.symlinks[tuple(parts)] = member.linkname
        if parts[1:] == [MANIFEST_NAME] and member.isreg() and scan.manifest is None and scan.root in (None, parts[0]):
            scan.root = parts[0]
            scan.manifest = self._read_manifest(member, archive)

    def _read_manifest(self, member: tarfile.TarInfo, archive: tarfile.TarFile) -> bytes:
        if member.size > MANIFEST_SIZE_CAP:
            self.scan.findings.append(f"{shown(member.name)}: {member.size} bytes, over {MANIFEST_SIZE_CAP}")
            return b""
        extracted = archive.extractfile(member)
        return extracted.read() if extracted else b""

    def _through_symlinks(self) -> Iterator[str]:
        return _through_symlinks_of(self.paths, self.symlinks)

    def stopped(self, finding: str) -> None:
        self.scan.findings.append(f"{finding}; the rest of the tarball was not read")
        self.scan.stopped = True

    def finish(self) -> MemberScan:
        root = self.scan.root
        if root is None:
            return self.scan
        for top, names in self.tops.items():
            if top != root:
                self.scan.findings.extend(f"{shown(name)}: outside the root directory {shown(root)}/" for name in names)
        self.scan.findings.extend(
            f"{shown(name)}: the root must be a directory"
            for name in self.non_directory_roots
            if _parts(name) == [root]
        )
        self.scan.findings.extend(self._through_symlinks())
        for link, target in self.symlinks.items():
            if link[0] != root:
                continue
            try:
                _resolve(link[:-1], target, self.symlinks, hops=[SYMLINK_HOPS])
            except _Escape as escape:
                self.scan.findings.append(f"{shown('/'.join(link))}: symlink to {shown(target)} {escape}")
        return self.scan


def _through_symlinks_of(paths: list[tuple[str, ...]], links: dict[tuple[str, ...], str]) -> Iterator[str]:
    """Members below a symlink (`root/d -> .` then `root/d/x -> ..`): GNU tar follows the link while unpacking, so
    where they land is not what their names say. No artifact has them; each is a finding."""
    for path in paths:
        through = next((path[:cut] for cut in range(1, len(path)) if path[:cut] in links), None)
        if through is not None:
            yield f"{shown('/'.join(path))}: its path goes through the symlink {shown('/'.join(through))}"


def _resolve(
    base: tuple[str, ...], target: str, links: dict[tuple[str, ...], str], *, hops: list[int]
) -> tuple[str, ...]:
    """Where `target` (a symlink's value, relative to directory `base`) ends up, following the tarball's other
    symlinks as the kernel would; `base` starts with the root, so reaching above it means leaving the root."""
    if target.startswith("/"):
        raise _Escape("is absolute: it leaves the root")
    current = list(base)
    for part in _parts(target):
        if part == "..":
            if len(current) <= 1:
                raise _Escape("leaves the root")
            current.pop()
            continue
        current.append(part)
        if tuple(current) in links:
            hops[0] -= 1
            if hops[0] < 0:
                raise _Escape(f"loops (more than {SYMLINK_HOPS} links)")
            current = list(_resolve(tuple(current[:-1]), links[tuple(current)], links, hops=hops))
    return tuple(current)


@contextmanager
def open_members(path: Path) -> Iterator[tarfile.TarFile]:
    """The tarball as a stream of members, read as GNU tar in the check containers reads it: through every
    concatenated gzip member (tarfile's own "r|gz" stops after the first, so members hidden behind it would be
    unpacked unscanned), with extension headers capped (`CappedTarInfo`)."""
    with gzip.open(path, "rb") as stream, tarfile.open(fileobj=stream, mode="r|", tarinfo=CappedTarInfo) as archive:
        yield archive


def scan_members(path: Path, root: str | None = None) -> MemberScan:
    """One streamed pass over the headers of `path`; raises `NotATarball` when its first header is unreadable.
    `root`: the top-level directory a tarball without a manifest (the -debug companion) must stay inside; else the
    one that holds manifest.json."""
    scanner = _Scanner()
    scanner.scan.root = root
    opened = False
    try:
        with open_members(path) as archive:
            opened = True
            for member in archive:
                scanner.add(member, archive)
    except _Stop as stop:
        scanner.stopped(str(stop))
    except (tarfile.TarError, OSError, EOFError) as error:
        if not opened:
            raise NotATarball(str(error)) from None
        scanner.scan.findings.append(f"unreadable after {scanner.scan.members} members (truncated or corrupt): {error}")
    return scanner.finish()
