"""The comparer the reproducibility test reports with: it names the first member that differs, and how."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from tests.tardiff import first_difference


def _tarball(path: Path, members: dict[str, bytes], mtime: int = 0, mode: int = 0o644) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, mode
            archive.addfile(info, io.BytesIO(data))
    return path


def test_identical_files_have_no_difference(tmp_path: Path) -> None:
    one = _tarball(tmp_path / "a.tar.gz", {"r/a": b"1", "r/b": b"2"})

    assert first_difference(one, one) is None


def test_names_the_first_member_whose_content_differs(tmp_path: Path) -> None:
    one = _tarball(tmp_path / "a.tar.gz", {"r/a": b"1", "r/b": b"2", "r/c": b"3"})
    other = _tarball(tmp_path / "b.tar.gz", {"r/a": b"1", "r/b": b"X", "r/c": b"Y"})

    difference = first_difference(one, other)

    assert difference is not None
    assert difference.startswith("member 1 r/b: content differs")


def test_names_a_metadata_difference(tmp_path: Path) -> None:
    one = _tarball(tmp_path / "a.tar.gz", {"r/a": b"1"}, mtime=10)
    other = _tarball(tmp_path / "b.tar.gz", {"r/a": b"1"}, mtime=20)

    assert first_difference(one, other) == "member 0 r/a: mtime differs: 10 vs 20"


def test_names_extra_members(tmp_path: Path) -> None:
    one = _tarball(tmp_path / "a.tar.gz", {"r/a": b"1"})
    other = _tarball(tmp_path / "b.tar.gz", {"r/a": b"1", "r/z": b"2"})

    difference = first_difference(one, other)

    assert difference is not None and "1 more members, from r/z" in difference
