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
from elftools.elf.sections import NoteSection, SymbolTableSection

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
    dynamic: bool = False
    build_id: str | None = None
    debuglink: bool = False
    debug_info: bool = False
    relro: bool = False
    # Undefined dynamic symbols that show how it was compiled: __stack_chk_fail, the fortified __*_chk calls.
    hardening_imports: tuple[str, ...] = ()


@dataclass
class TreeFacts:
    """What one pass over the tarball learns: ELF files, plugin names, vendor libraries, leaking text files."""

    elf_files: list[ElfFacts] = field(default_factory=list)
    plugins: set[str] = field(default_factory=set)
    vendor_libraries: list[str] = field(default_factory=list)
    prefix_in_text: list[str] = field(default_factory=list)


_HARDENING_SYMBOL = re.compile(r"^__(stack_chk_fail|[a-z0-9_]+_chk)$")


def _build_id(elf: ELFFile) -> str | None:
    for section in elf.iter_sections():
        if isinstance(section, NoteSection):
            for note in section.iter_notes():
                if note["n_type"] == "NT_GNU_BUILD_ID":
                    return str(note["n_desc"])
    return None


def _hardening_imports(elf: ELFFile) -> tuple[str, ...]:
    table = elf.get_section_by_name(".dynsym")
    if not isinstance(table, SymbolTableSection):
        return ()
    found = {
        symbol.name
        for symbol in table.iter_symbols()
        if symbol["st_shndx"] == "SHN_UNDEF" and _HARDENING_SYMBOL.match(symbol.name)
    }
    return tuple(sorted(found))


def _elf_facts(path: str, data: bytes) -> ElfFacts | None:
    try:
        elf = ELFFile(io.BytesIO(data))
        runpaths: list[str] = []
        dynamic = False
        for section in elf.iter_sections():
            if not isinstance(section, DynamicSection):
                continue
            dynamic = True
            for tag in section.iter_tags():
                if tag.entry.d_tag in ("DT_RUNPATH", "DT_RPATH"):
                    runpaths.extend(str(getattr(tag, "runpath", None) or getattr(tag, "rpath", "")).split(":"))
        return ElfFacts(
            path,
            [entry for entry in runpaths if entry],
            str(elf.header["e_machine"]),
            dynamic=dynamic,
            build_id=_build_id(elf),
            debuglink=elf.get_section_by_name(".gnu_debuglink") is not None,
            debug_info=elf.get_section_by_name(".debug_info") is not None,
            relro=any(segment["p_type"] == "PT_GNU_RELRO" for segment in elf.iter_segments()),
            hardening_imports=_hardening_imports(elf),
        )
    except ELFError:
        return None


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
    expected = expected_plugins(artifact.series, gpu=artifact.gpu)
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


# The binaries whose hardening `--verify` checks: the daemons, the step daemon and the library every one loads.
HARDENED_FILES = ("sbin/slurmctld", "sbin/slurmd", "sbin/slurmstepd", "sbin/slurmdbd", "lib/slurm/libslurmfull.so")


def check_hardening(facts: TreeFacts, recorder: CheckRecorder) -> None:
    """The release build's hardening is in the binaries, not only in the manifest: stack protector calls, a
    RELRO segment, and fortified libc calls (`__*_chk`) in the daemons and libslurmfull."""
    by_path = {elf.path: elf for elf in facts.elf_files}
    evidence = []
    fortified = set()
    for path in HARDENED_FILES:
        elf = by_path.get(path)
        if elf is None:
            evidence.append(f"{path}: not in the artifact")
            continue
        if "__stack_chk_fail" not in elf.hardening_imports:
            evidence.append(f"{path}: no __stack_chk_fail (not built with -fstack-protector-strong)")
        if not elf.relro:
            evidence.append(f"{path}: no GNU_RELRO segment (not linked with -z relro)")
        fortified |= {name for name in elf.hardening_imports if name != "__stack_chk_fail"}
    if not fortified:
        evidence.append("no fortified libc call (__*_chk) in any of them: not built with -D_FORTIFY_SOURCE")
    if evidence:
        recorder.fail("the Slurm binaries lack the release build's hardening", evidence)
    else:
        recorder.ok(
            f"{len(HARDENED_FILES)} binaries with stack protector, RELRO and fortified calls "
            f"({', '.join(sorted(fortified)[:4])}, …)"
        )


def check_debug_symbols(
    artifact: ArtifactUnderTest, facts: TreeFacts, companion_ids: set[str] | None, *, recorder: CheckRecorder
) -> None:
    """No ELF file with a dynamic section still has debug information; each one that points to a debug file
    (.gnu_debuglink) has a build id and — with the -debug companion beside the artifact (`companion_ids`: the build
    ids it holds) — its debug file is there. Slurm's own daemons and libslurmfull must point to one."""
    if artifact.manifest.get("debug_symbols") is None:
        recorder.ok("the manifest names no debug companion (an artifact from before split debug symbols)")
        return
    shipped = [elf for elf in facts.elf_files if elf.dynamic]
    split = [elf for elf in shipped if elf.debuglink]
    problems = [f"{elf.path}: still has debug information" for elf in shipped if elf.debug_info]
    problems += [f"{elf.path}: no debug file (.gnu_debuglink)" for elf in shipped
                 if elf.path in HARDENED_FILES and not elf.debuglink]  # fmt: skip
    problems += [f"{elf.path}: a .gnu_debuglink but no build id" for elf in split if not elf.build_id]
    if companion_ids is not None:
        problems += [
            f"{elf.path}: build id {elf.build_id} has no debug file in the companion"
            for elf in split
            if elf.build_id and elf.build_id not in companion_ids
        ]
    if problems:
        recorder.fail(f"{len(problems)} problems with the split debug symbols", problems)
    elif companion_ids is None:
        recorder.ok(f"{len(shipped)} ELF files stripped, {len(split)} with a build id and a debug file; the -debug "
                    "companion is not beside the artifact, so the debug files were not checked")  # fmt: skip
    else:
        recorder.ok(f"{len(shipped)} ELF files stripped; the debug files of all {len(split)} that name one are in "
                    "the -debug companion")  # fmt: skip
