"""Static checks on the host (no container): RUNPATHs, vendor libraries, build-prefix leaks, expected plugins.

Every ELF file is parsed with pyelftools straight from the tarball stream.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from slurm_factory.artifact import MANIFEST_NAME
from slurm_factory.catalog.plugins import expected_plugins
from slurm_factory.verify.artifact_reader import ArtifactUnderTest
from slurm_factory.verify.report import CheckRecorder

SYSTEM_LIBRARY_DIRS = frozenset(
    {
        "/lib",
        "/lib64",
        "/usr/lib",
        "/usr/lib64",
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib/aarch64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
    }
)
# GPU vendor libraries are dlopened from the host's driver; shipping them (or stubs) would shadow the driver.
VENDOR_LIBRARY = re.compile(r"^lib(nvidia-ml|rocm_smi64|cuda|nvidia-[a-z-]+|amdhip64|hsa-runtime64)\b.*\.so")
_ELF_MAGIC = b"\x7fELF"
# The ELF machine type (e_machine, as pyelftools names it) every binary of an artifact for each arch must have.
ELF_MACHINES = {"amd64": "EM_X86_64", "arm64": "EM_AARCH64"}


@dataclass
class ElfFacts:
    path: str
    runpaths: list[str]
    machine: str = ""


@dataclass
class TreeFacts:
    """What one pass over the tarball learns: ELF files, plugin names, vendor libraries, leaking text files."""

    elf_files: list[ElfFacts] = field(default_factory=list)
    plugins: set[str] = field(default_factory=set)
    vendor_libraries: list[str] = field(default_factory=list)
    prefix_in_text: list[str] = field(default_factory=list)


def _elf_facts(path: str, data: bytes) -> ElfFacts | None:
    try:
        elf = ELFFile(io.BytesIO(data))
    except ELFError:
        return None
    runpaths: list[str] = []
    for section in elf.iter_sections():
        if not isinstance(section, DynamicSection):
            continue
        for tag in section.iter_tags():
            if tag.entry.d_tag in ("DT_RUNPATH", "DT_RPATH"):
                runpaths.extend(str(getattr(tag, "runpath", None) or getattr(tag, "rpath", "")).split(":"))
    return ElfFacts(path, [entry for entry in runpaths if entry], str(elf.header["e_machine"]))


def collect_tree_facts(artifact: ArtifactUnderTest) -> TreeFacts:
    facts = TreeFacts()
    build_paths = [path.encode() for path in artifact.build_paths]
    for member, stream in artifact.members():
        relative = PurePosixPath(*PurePosixPath(member.name).parts[1:])
        name = relative.name
        if relative.parent == PurePosixPath("lib/slurm") and (member.isfile() or member.issym()):
            facts.plugins.add(name)
        if (member.isfile() or member.issym()) and VENDOR_LIBRARY.match(name):
            facts.vendor_libraries.append(str(relative))
        if stream is None:
            continue
        data = stream.read()
        if data.startswith(_ELF_MAGIC):
            elf = _elf_facts(str(relative), data)
            if elf is not None:
                facts.elf_files.append(elf)
        elif str(relative) != MANIFEST_NAME:
            named = [path.decode() for path in build_paths if path in data]
            if named:
                facts.prefix_in_text.append(f"{relative}: {', '.join(named)}")
    return facts


def _runpath_problem(entry: str, build_prefix: str) -> str | None:
    if build_prefix in entry:
        return "names the build prefix"
    if entry.startswith("$ORIGIN") or entry.startswith("${ORIGIN}"):
        return None
    if entry.rstrip("/") in SYSTEM_LIBRARY_DIRS:
        return None
    return "is neither $ORIGIN-relative nor a system directory"


def check_runpaths(artifact: ArtifactUnderTest, facts: TreeFacts, recorder: CheckRecorder) -> None:
    evidence = []
    for elf in facts.elf_files:
        for entry in elf.runpaths:
            problem = _runpath_problem(entry, artifact.build_prefix)
            if problem:
                evidence.append(f"{elf.path}: RUNPATH {':'.join(elf.runpaths)} ({entry} {problem})")
                break
    if not facts.elf_files:
        recorder.fail("no ELF files found in the artifact")
    elif evidence:
        recorder.fail(f"{len(evidence)} ELF files have RUNPATH entries that do not relocate", evidence)
    else:
        recorder.ok(f"{len(facts.elf_files)} ELF files, every RUNPATH $ORIGIN-relative or a system directory")


def check_no_vendor_libraries(facts: TreeFacts, recorder: CheckRecorder) -> None:
    if facts.vendor_libraries:
        recorder.fail(
            "GPU vendor libraries (or stubs) are shipped; they must come from the host driver", facts.vendor_libraries
        )
    else:
        recorder.ok("no GPU vendor library or stub shipped")


def check_no_prefix_in_text(artifact: ArtifactUnderTest, facts: TreeFacts, recorder: CheckRecorder) -> None:
    if facts.prefix_in_text:
        recorder.fail(
            "text files name build-container paths that do not exist where the tree is unpacked", facts.prefix_in_text
        )
    else:
        recorder.ok("no text file names the build prefix")


def check_expected_plugins(artifact: ArtifactUnderTest, facts: TreeFacts, recorder: CheckRecorder) -> None:
    expected = expected_plugins(artifact.series, artifact.gpu)
    missing = [name for name in expected if name not in facts.plugins]
    if missing:
        recorder.fail(f"{len(missing)} expected plugins missing from lib/slurm", missing)
    else:
        recorder.ok(f"all {len(expected)} expected plugins present ({len(facts.plugins)} in lib/slurm)")


def check_machine_type(artifact: ArtifactUnderTest, facts: TreeFacts, recorder: CheckRecorder) -> None:
    """Every ELF file is for the artifact's arch: an amd64 object in an arm64 tree (or the reverse) would fail on
    the cluster's nodes, not here."""
    expected = ELF_MACHINES.get(artifact.arch)
    if expected is None:
        recorder.fail(f"the manifest's arch {artifact.arch!r} is unknown; valid: {', '.join(ELF_MACHINES)}")
        return
    wrong = [f"{elf.path}: {elf.machine}" for elf in facts.elf_files if elf.machine != expected]
    if wrong:
        recorder.fail(f"{len(wrong)} ELF files are not {artifact.arch} ({expected})", wrong)
    else:
        recorder.ok(f"{len(facts.elf_files)} ELF files, all {artifact.arch} ({expected})")
