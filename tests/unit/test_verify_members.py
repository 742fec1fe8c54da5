"""The member scan treats an artifact as hostile: each kind of unsafe member is a finding that names it, size caps
stop the scan before the data is read, and a clean artifact has no finding."""

from __future__ import annotations

import gzip
import tarfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from slurm_factory.verify import members
from slurm_factory.verify.members import MemberScan, scan_members
from tests.unit.tarballs import (
    ROOT,
    Member,
    manifest_member,
    plugin_members,
    record,
    tar_bytes,
    write_artifact,
    write_gzip_bomb,
)


def _in_root(name: str, data: bytes = b"x", **fields: Any) -> Member:
    return Member(f"{ROOT}/{name}", data, **fields)


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> Member:
    return Member(f"{ROOT}/{name}", kind=kind, link=target)


# (id, the hostile members, the finding that must name them)
HOSTILE: list[tuple[str, list[Member], str]] = [
    ("absolute-path", [Member(f"/{ROOT}/bin/evil", b"x")], f"/{ROOT}/bin/evil: absolute path"),
    ("dot-dot", [_in_root("../../x")], f"{ROOT}/../../x: '..' component"),
    ("other-root", [Member("elsewhere/x", b"x")], f"elsewhere/x: outside the root directory {ROOT}/"),
    ("symlink-up", [_link("lib/up", "../../tmp")], f"{ROOT}/lib/up: symlink to ../../tmp leaves the root"),
    ("symlink-absolute", [_link("etc/pw", "/etc/shadow")], f"{ROOT}/etc/pw: symlink to /etc/shadow is absolute"),
    (
        "symlink-via-symlink",
        [_link("here", "."), _link("lib/x", "../here/../../etc")],
        f"{ROOT}/lib/x: symlink to ../here/../../etc leaves the root",
    ),
    ("symlink-loop", [_link("a", "b"), _link("b", "a/c")], f"{ROOT}/a: symlink to b loops"),
    (
        "member-below-a-symlinked-directory",
        [_link("d", "."), _link("d/x", "..")],
        f"{ROOT}/d/x: its path goes through the symlink {ROOT}/d",
    ),
    (
        "deep-member-below-a-symlinked-directory",
        [_link("a", "."), _link("a/a/a/esc", "../../..")],
        f"{ROOT}/a/a/a/esc: its path goes through the symlink {ROOT}/a",
    ),
    ("file-below-a-symlink", [_link("lib", "/tmp"), _in_root("lib/evil.so", b"x")], f"{ROOT}/lib/evil.so: its path"),
    ("hard-link-out", [_link("bin/pw", "/etc/shadow", tarfile.LNKTYPE)], f"{ROOT}/bin/pw: hard link to /etc/shadow"),
    ("hard-link-in", [_in_root("a"), _link("b", f"{ROOT}/a", tarfile.LNKTYPE)], f"{ROOT}/b: hard link to {ROOT}/a"),
    ("block-device", [_in_root("dev/sda", b"", kind=tarfile.BLKTYPE)], f"{ROOT}/dev/sda: device file"),
    ("char-device", [_in_root("dev/mem", b"", kind=tarfile.CHRTYPE)], f"{ROOT}/dev/mem: device file"),
    ("fifo", [_in_root("run/pipe", b"", kind=tarfile.FIFOTYPE)], f"{ROOT}/run/pipe: FIFO"),
    ("setuid", [_in_root("bin/su", mode=0o4755)], f"{ROOT}/bin/su: setuid/setgid mode 4755"),
    ("setgid", [_in_root("bin/sg", mode=0o2755)], f"{ROOT}/bin/sg: setuid/setgid mode 2755"),
]


@pytest.mark.parametrize(("hostile", "finding"), [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE])
def test_each_hostile_member_is_a_finding_naming_it(tmp_path: Path, hostile: list[Member], finding: str) -> None:
    scan = scan_members(write_artifact(tmp_path, [*plugin_members(), *hostile]))

    assert not scan.safe
    assert any(line.startswith(finding) for line in scan.findings), scan.findings
    assert scan.root == ROOT


def test_a_clean_artifact_with_relative_symlinks_inside_the_root_has_no_finding(tmp_path: Path) -> None:
    clean = [
        Member(f"{ROOT}/lib", kind=tarfile.DIRTYPE, mode=0o755),
        Member(f"{ROOT}/lib/libslurm.so.42.0.0", b"\x7fELF", mode=0o755),
        Member(f"{ROOT}/lib/libslurm.so", kind=tarfile.SYMTYPE, link="libslurm.so.42.0.0"),
        Member(f"{ROOT}/bin/libs", kind=tarfile.SYMTYPE, link="../lib/./"),
        Member(f"{ROOT}/dangling", kind=tarfile.SYMTYPE, link="lib/not-there"),
    ]
    scan = scan_members(write_artifact(tmp_path, [*plugin_members(), *clean]))

    assert scan.findings == []
    assert scan.safe
    assert scan.root == ROOT
    assert scan.manifest is not None


def _scan_measured(path: Path) -> tuple[MemberScan, float, int]:
    tracemalloc.start()
    started = time.monotonic()
    scan = scan_members(path)
    seconds = time.monotonic() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return scan, seconds, peak


GIB = 1024**3
BOMBS = [
    ("member", tarfile.REGTYPE, f"{ROOT}/lib/zeros: declares {GIB} bytes, over the cap of {members.MEMBER_SIZE_CAP}"),
    ("gnu-long-name", tarfile.GNUTYPE_LONGNAME, f"a GNU long-name header declares {GIB} bytes, over the cap of"),
    ("pax-header", tarfile.XHDTYPE, f"a pax header declares {GIB} bytes, over the cap of {members.HEADER_SIZE_CAP}"),
]


@pytest.mark.parametrize(("kind", "finding"), [bomb[1:] for bomb in BOMBS], ids=[bomb[0] for bomb in BOMBS])
def test_a_gzip_bomb_is_refused_from_its_header_without_reading_the_gigabyte(
    tmp_path: Path, kind: bytes, finding: str
) -> None:
    bomb = write_gzip_bomb(tmp_path, kind)
    assert bomb.stat().st_size < 2 * 1024**2

    scan, seconds, peak = _scan_measured(bomb)

    assert scan.stopped
    assert len(scan.findings) == 1
    assert scan.findings[0].startswith(finding)
    assert scan.findings[0].endswith("; the rest of the tarball was not read")
    assert seconds < 1.0
    assert peak < 64 * 1024**2  # one compressed read buffer inflates to ~30 MB; the gigabyte is never held


def test_a_gnu_sparse_member_is_refused_before_tarfile_reads_its_extension_blocks(tmp_path: Path) -> None:
    scan = scan_members(write_artifact(tmp_path, [_in_root("lib/holes", b"", kind=tarfile.GNUTYPE_SPARSE)]))

    assert scan.findings == [f"{ROOT}/lib/holes: sparse file; the rest of the tarball was not read"]


def test_members_over_the_total_cap_stop_the_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(members, "TOTAL_SIZE_CAP", 3000)
    files = [Member(f"{ROOT}/share/{index}", bytes(1000)) for index in range(5)]
    scan = scan_members(write_artifact(tmp_path, files))

    assert scan.stopped
    assert scan.findings[-1].startswith(f"{ROOT}/share/2: the members exceed the total cap of 3000 bytes")


def test_too_many_members_stop_the_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(members, "MEMBER_COUNT_CAP", 10)
    scan = scan_members(write_artifact(tmp_path, [Member(f"{ROOT}/share/{index}") for index in range(20)]))

    assert scan.stopped
    assert scan.members == 11
    assert scan.findings[-1].startswith("more than 10 members")


def test_members_hidden_behind_a_second_gzip_member_are_scanned(tmp_path: Path) -> None:
    """GNU tar (in the check containers) reads on through concatenated gzip members; so must the scan."""
    visible = gzip.compress(record(Member(ROOT, kind=tarfile.DIRTYPE, mode=0o755)) + record(manifest_member()))
    hidden = gzip.compress(tar_bytes([_link("lib/out", "../../etc")]))
    path = tmp_path / "slurm-24.11-trixie-software.tar.gz"
    path.write_bytes(visible + hidden)
    with tarfile.open(path, "r|gz") as archive:
        assert [member.name for member in archive] == [ROOT, f"{ROOT}/manifest.json"], "tarfile alone misses it"

    scan = scan_members(path)

    assert scan.findings == [f"{ROOT}/lib/out: symlink to ../../etc leaves the root"]


def test_a_truncated_tarball_is_a_finding(tmp_path: Path) -> None:
    path = write_artifact(tmp_path, [Member(f"{ROOT}/share/big", bytes(range(256)) * 4000)])
    path.write_bytes(path.read_bytes()[:-200])
    scan = scan_members(path)

    assert any("truncated or corrupt" in line for line in scan.findings), scan.findings


def test_control_characters_in_a_member_name_are_escaped(tmp_path: Path) -> None:
    scan = scan_members(write_artifact(tmp_path, [Member(f"{ROOT}/../x\nFAKE: ok", b"x")]))

    assert scan.findings == [f"{ROOT}/../x\\nFAKE: ok: '..' component in its path"]
