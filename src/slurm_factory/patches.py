"""Patches to Slurm's source: slurm-factory's own (every build) and a site's `--patch FILE` (in the order given).

A site patch is read once, when the request is made: its bytes are part of the plan (so of the build id), its
sha256 goes into the manifest and the SBOM. Before any container starts, the patches are applied in order to the
release's source in a scratch directory on the host: one that does not apply is refused (exit 2) naming the file
and its first rejected hunk. Inside the build they are applied again, the same way, after the source's sha256 is
checked and before configure.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Literal

from slurm_factory.catalog.build import load_build_catalog
from slurm_factory.exceptions import ConfigurationError, PatchRejectedError, quoted

# A patch is text a reviewer reads; one larger than this is a source tree, not a hotfix.
MAX_PATCH_BYTES = 8 * 1024 * 1024
PATCH_DIR = PurePosixPath("patches")
# What GNU patch is run with, here and in the build container: strip one leading directory (a/, b/), never ask,
# never apply in reverse on its own, no .orig files in the tree, and no fuzz: a hunk whose context does not match
# exactly is refused, not applied somewhere nearby (what Debian's quilt does for the same reason).
PATCH_ARGUMENTS = ("-p1", "--batch", "--forward", "--no-backup-if-mismatch", "--fuzz=0")
# What `patch` says, first match wins, and what it means for a hotfix.
_PATCH_PROBLEMS = (
    ("Only garbage", "it holds no hunk patch can read"),
    ("malformed patch", None),
    ("dangerous file name", "it names a file outside the source tree"),
    ("previously applied", "it is already in the source, or applies only in reverse"),
    ("FAILED", None),
    ("can't find file", "a file it patches is not in the source"),
    ("No file to patch", "a file it patches is not in the source"),
)
_DIFF_HEADER = re.compile(rb"^(--- |\+\+\+ |diff --git |\*\*\* |Index: )", re.MULTILINE)


@dataclass(frozen=True)
class SourcePatch:
    """One patch of a build, in the order it is applied: where it comes from, its file name inside the plan
    (`patches/NN-name`), its text and its sha256."""

    origin: Literal["slurm-factory", "site"]
    name: str
    text: str
    sha256: str
    source: str  # the site's path, or the package file of our own

    @property
    def plan_name(self) -> str:
        return str(PATCH_DIR / self.name)

    def to_json(self) -> dict[str, str]:
        """As the manifest records it: no host path, so the same patch gives the same tarball anywhere."""
        return {"name": self.name, "origin": self.origin, "sha256": self.sha256}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def own_patches() -> tuple[SourcePatch, ...]:
    """slurm-factory's patches from the catalog, as package files."""
    patches = []
    for number, entry in enumerate(load_build_catalog().patches, start=1):
        data = resources.files("slurm_factory").joinpath("templates", "patches", entry.name).read_bytes()
        patches.append(
            SourcePatch("slurm-factory", f"{number:02d}-{entry.name}", data.decode(), _digest(data), entry.name)
        )
    return tuple(patches)


def _read_patch(value: str) -> bytes:
    path = Path(value).expanduser()
    try:
        if not path.is_file():
            reason = "no such file" if not path.exists() else "not a regular file"
            raise ConfigurationError(f"--patch {quoted(value)}: {reason}")
        if path.stat().st_size > MAX_PATCH_BYTES:
            raise ConfigurationError(
                f"--patch {quoted(value)}: {path.stat().st_size} bytes; a patch is at most {MAX_PATCH_BYTES} bytes"
            )
        return path.read_bytes()
    except OSError as error:
        raise ConfigurationError(f"--patch {quoted(value)}: {error.strerror}") from None


def _safe_file_name(name: str) -> str:
    """A patch's file name as it is kept in the plan: letters, digits, `.`, `_`, `-` only."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "patch"
    return cleaned[:80]


def site_patches(values: Sequence[str], first_number: int) -> tuple[SourcePatch, ...]:
    """`--patch FILE` (repeatable), read and checked: a readable file, UTF-8 text, a unified or context diff."""
    patches = []
    for number, value in enumerate(values, start=first_number):
        data = _read_patch(value)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigurationError(f"--patch {quoted(value)}: not UTF-8 text") from None
        if not _DIFF_HEADER.search(data):
            raise ConfigurationError(
                f"--patch {quoted(value)}: not a patch (no '--- ', '+++ ' or 'diff --git' header)",
                hint="make it with `git format-patch` or `diff -u`; it is applied with patch -p1",
            )
        name = f"{number:02d}-{_safe_file_name(Path(value).name)}"
        patches.append(SourcePatch("site", name, text, _digest(data), str(Path(value).expanduser().resolve())))
    return tuple(patches)


def build_patches(values: Sequence[str] | None) -> tuple[SourcePatch, ...]:
    """Every patch of a build, in order: ours first, then the site's."""
    own = own_patches()
    return own + site_patches(values or (), first_number=len(own) + 1)


def _first_rejected_hunk(tree: Path) -> str | None:
    """The header line of the first hunk that `patch` saved as rejected."""
    for reject in sorted(tree.rglob("*.rej")):
        lines = reject.read_text(encoding="utf-8", errors="replace").splitlines()
        return next((line for line in lines if line.startswith(("@@", "*** "))), None)
    return None


def _rejection(output: str) -> str:
    """The first problem `patch` reported (its output and errors), with the file it was patching."""
    current = ""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("patching file "):
            current = line.removeprefix("patching file ").strip("'")
        for marker, meaning in _PATCH_PROBLEMS:
            if marker in line:
                said = f"{line} ({meaning})" if meaning else line
                return f"{current}: {said}" if current and marker == "FAILED" else said
    return lines[-1] if lines else "patch failed"


def _unpack_source(tarball: Path, destination: Path) -> Path:
    """The release tarball's single top-level directory, unpacked (members filtered as data)."""
    with tarfile.open(tarball, "r:gz") as archive:
        archive.extractall(destination, filter="data")
    roots = [entry for entry in destination.iterdir() if entry.is_dir()]
    if len(roots) != 1:
        raise ConfigurationError(f"{tarball.name}: expected one top-level directory, found {len(roots)}")
    return roots[0]


def check_patches_apply(source_tarball: Path, patches: Sequence[SourcePatch], version: str) -> str | None:
    """Apply `patches` in order to a scratch copy of the source, as the build will; refuse the first that does not
    apply. Returns why the check could not run (no `patch` on this host), else None."""
    if not any(patch.origin == "site" for patch in patches):
        return None
    program = shutil.which("patch")
    if program is None:
        return "GNU patch is not installed on this host; the build container applies them"
    with tempfile.TemporaryDirectory(prefix="slurm-factory-patch-check-") as scratch:
        tree = _unpack_source(source_tarball, Path(scratch))
        for patch in patches:
            done = subprocess.run(
                [program, *PATCH_ARGUMENTS],
                input=patch.text,
                cwd=tree,
                capture_output=True,
                text=True,
                check=False,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
            )
            if done.returncode != 0:
                hunk = _first_rejected_hunk(tree)
                raise PatchRejectedError(
                    f"--patch {quoted(patch.source)} does not apply to Slurm {version}: "
                    f"{_rejection(done.stdout + chr(10) + done.stderr)}",
                    hint=(f"first rejected hunk: {hunk}; " if hunk else "")
                    + "rebase the patch onto this release (it is applied with patch -p1 after the patches before it)",
                )
    return None
