"""The `-debug.tar.gz` companion of an artifact under verification: found beside it by the name its manifest
records, checked against the manifest's sha256 and scanned like the artifact before anything unpacks it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from slurm_factory.artifact import DEBUG_DIRECTORY
from slurm_factory.source import sha256_of
from slurm_factory.verify.artifact_reader import ArtifactUnderTest
from slurm_factory.verify.members import NotATarball, open_members, scan_members

_DEBUG_FILE = re.compile(r"^\.build-id/([0-9a-f]{2})/([0-9a-f]+)\.debug$")


@dataclass(frozen=True)
class DebugCompanion:
    """`path` only when the companion is beside the artifact, is the one the manifest names and is safe to unpack;
    `build_ids` are the ids it has debug files for; `problem` says what is wrong with one that is there."""

    path: Path | None = None
    build_ids: set[str] | None = None
    problem: str | None = None


def find_debug_companion(artifact: ArtifactUnderTest) -> DebugCompanion:
    recorded = artifact.manifest.get("debug_symbols")
    if not isinstance(recorded, dict):
        return DebugCompanion()
    name = str(recorded.get("artifact") or "")
    if not name or PurePosixPath(name).name != name or name.startswith("."):
        return DebugCompanion(problem=f"the manifest names the debug companion {name[:60]!r}, not a file name")
    path = artifact.path.with_name(name)
    if not path.is_file():
        return DebugCompanion()
    if sha256_of(path) != recorded.get("sha256"):
        return DebugCompanion(problem=f"{name} is not the companion the manifest records (sha256 differs)")
    try:
        scan = scan_members(path, root=artifact.root)
    except NotATarball as error:
        return DebugCompanion(problem=f"{name} is not a readable gzip-compressed tarball ({error})")
    if not scan.safe or scan.stopped:
        finding = scan.findings[0] if scan.findings else "the scan stopped at a size cap"
        return DebugCompanion(problem=f"{name} is unsafe to unpack: {finding}")
    ids, outside = _build_ids(path, artifact.root)
    if outside:
        return DebugCompanion(problem=f"{name} holds files outside {DEBUG_DIRECTORY}/, e.g. {outside[0]}: unpacked "
                              "over the tree they would replace its files")  # fmt: skip
    return DebugCompanion(path, ids)


def _build_ids(path: Path, root: str) -> tuple[set[str], list[str]]:
    """The build ids of the `<root>/lib/debug/.build-id/xx/yyyy.debug` members, and the members that are not
    under `<root>/lib/debug/` nor one of the directories above it."""
    prefix = f"{root}/{DEBUG_DIRECTORY}/"
    parents = {str(parent) for parent in PurePosixPath(prefix).parents} | {prefix.rstrip("/")}
    ids, outside = set(), []
    with open_members(path) as archive:
        for member in archive:
            name = member.name.rstrip("/")
            if member.name.startswith(prefix):
                match = _DEBUG_FILE.match(member.name[len(prefix) :])
                if match and member.isfile():
                    ids.add(match[1] + match[2])
            elif not (member.isdir() and name in parents):
                outside.append(member.name)
    return ids, outside
