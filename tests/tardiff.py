"""Where two tarballs that should be identical first differ: the member, and how (metadata or content)."""

from __future__ import annotations

import gzip
import hashlib
import tarfile
from pathlib import Path

_FIELDS = ("name", "type", "mode", "uid", "gid", "uname", "gname", "mtime", "size", "linkname", "pax_headers")


def _digest(archive: tarfile.TarFile, member: tarfile.TarInfo) -> str | None:
    stream = archive.extractfile(member) if member.isfile() else None
    return hashlib.sha256(stream.read()).hexdigest() if stream is not None else None


def first_difference(first: Path, second: Path) -> str | None:
    """None when the files are byte-identical; otherwise a sentence naming the first differing member."""
    if first.read_bytes() == second.read_bytes():
        return None
    with tarfile.open(first, "r:gz") as a, tarfile.open(second, "r:gz") as b:
        members_a, members_b = a.getmembers(), b.getmembers()
        for index, (one, other) in enumerate(zip(members_a, members_b, strict=False)):
            for field in _FIELDS:
                if getattr(one, field) != getattr(other, field):
                    return (
                        f"member {index} {one.name}: {field} differs: {getattr(one, field)!r} vs "
                        f"{getattr(other, field)!r}"
                    )
            digest_a, digest_b = _digest(a, one), _digest(b, other)
            if digest_a != digest_b:
                return f"member {index} {one.name}: content differs (sha256 {digest_a} vs {digest_b})"
        if len(members_a) != len(members_b):
            shorter = min(len(members_a), len(members_b))
            longer, extra = (first, members_a) if len(members_a) > len(members_b) else (second, members_b)
            return f"{longer} has {len(extra) - shorter} more members, from {extra[shorter].name}"
    if gzip.decompress(first.read_bytes()) == gzip.decompress(second.read_bytes()):
        return "the tar streams are identical; the gzip framing differs"
    return "every member is equal, the tar stream differs (headers or padding)"
