"""Static verification on the host: RUNPATHs of real ELF files (compiled here with gcc), vendor libraries,
build-container paths in text files, expected plugins — each check passes on a clean tree and fails, with the
evidence, on a broken one."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from slurm_factory.verify import static
from slurm_factory.verify.artifact_reader import open_artifact, scan_tarball
from slurm_factory.verify.report import CheckRecorder
from tests.unit.tarballs import (
    PREFIX,
    ROOT,
    SPACK_VIEW,
    Member,
    compiled_program,
    hardened_members,
    manifest,
    plugin_members,
    shared_object,
    write_artifact,
)


def _artifact(tmp_path: Path, files: dict[str, bytes], overrides: dict[str, Any] | None = None) -> Path:
    members = [*plugin_members(), *(Member(f"{ROOT}/{name}", data) for name, data in files.items())]
    return write_artifact(tmp_path, members, manifest(**(overrides or {})))


def _run(check: Any, artifact_path: Path, *, with_artifact: bool = False) -> CheckRecorder:
    artifact = open_artifact(scan_tarball(artifact_path))
    facts = static.collect_tree_facts(artifact)
    recorder = CheckRecorder("static")
    if with_artifact:
        check(artifact, facts, recorder)
    else:
        check(facts, recorder)
    return recorder


def test_origin_relative_runpath_passes(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path, {"lib/libgood.so": shared_object(tmp_path, "$ORIGIN/../lib")})
    assert _run(static.check_runpaths, artifact, with_artifact=True).failed is False


def test_runpath_into_the_build_prefix_fails_naming_file_and_runpath(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path, {"lib/libbad.so": shared_object(tmp_path, f"{PREFIX}/lib")})
    result = _run(static.check_runpaths, artifact, with_artifact=True)
    assert result.failed is True
    assert result.evidence == [f"lib/libbad.so: RUNPATH {PREFIX}/lib ({PREFIX}/lib names the build prefix)"]


def test_text_file_naming_a_spack_view_path_fails(tmp_path: Path) -> None:
    pkgconfig = f"prefix={SPACK_VIEW}\nlibdir=${{prefix}}/lib\n".encode()
    artifact = _artifact(tmp_path, {"lib/pkgconfig/slurm.pc": pkgconfig, "etc/clean.txt": b"nothing here"})
    result = _run(static.check_no_prefix_in_text, artifact, with_artifact=True)
    assert result.failed is True
    assert result.evidence == [f"lib/pkgconfig/slurm.pc: {SPACK_VIEW}"]


def test_shipped_vendor_library_fails_and_a_clean_tree_passes(tmp_path: Path) -> None:
    broken = _artifact(tmp_path, {"lib/libnvidia-ml.so.1": b"stub"})
    assert _run(static.check_no_vendor_libraries, broken).evidence == ["lib/libnvidia-ml.so.1"]
    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    clean = _artifact(clean_dir, {})
    assert _run(static.check_no_vendor_libraries, clean).failed is False
    assert _run(static.check_expected_plugins, clean, with_artifact=True).failed is False


def test_gpu_artifact_without_gpu_plugins_fails_the_plugin_check(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path, {}, {"gpu": True})
    result = _run(static.check_expected_plugins, artifact, with_artifact=True)
    assert result.failed is True
    assert sorted(result.evidence) == ["gpu_nvml.so", "gpu_rsmi.so"]


# e_machine sits at byte 18 of the ELF header (little-endian here): 62 is x86-64, 183 AArch64.
EM_AARCH64 = 183


def _as_aarch64(elf: bytes) -> bytes:
    """The gcc-built object relabelled AArch64: the check reads only the header's machine type."""
    return elf[:18] + EM_AARCH64.to_bytes(2, "little") + elf[20:]


def test_amd64_tree_of_x86_64_objects_passes_the_machine_type_check(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path, {"lib/libgood.so": shared_object(tmp_path, "$ORIGIN")})
    result = _run(static.check_machine_type, artifact, with_artifact=True)
    assert result.failed is False
    assert "amd64 (EM_X86_64)" in result.summary


def test_manifest_without_arch_is_checked_as_amd64(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path, {"lib/libarm.so": _as_aarch64(shared_object(tmp_path, "$ORIGIN"))})
    result = _run(static.check_machine_type, artifact, with_artifact=True)
    assert result.failed is True
    assert "lib/libarm.so: EM_AARCH64" in result.evidence


def test_arm64_tree_with_an_x86_64_object_fails_naming_it(tmp_path: Path) -> None:
    elf = shared_object(tmp_path, "$ORIGIN")
    artifact = _artifact(tmp_path, {"lib/libarm.so": _as_aarch64(elf), "lib/libx86.so": elf}, {"arch": "arm64"})
    result = _run(static.check_machine_type, artifact, with_artifact=True)
    assert result.failed is True
    assert result.evidence == ["lib/libx86.so: EM_X86_64"]
    assert "not arm64 (EM_AARCH64)" in result.summary


def test_arm64_tree_of_aarch64_objects_passes(tmp_path: Path) -> None:
    artifact = _artifact(
        tmp_path, {"lib/libarm.so": _as_aarch64(shared_object(tmp_path, "$ORIGIN"))}, {"arch": "arm64"}
    )
    assert _run(static.check_machine_type, artifact, with_artifact=True).failed is False


# --- the release build: hardening and split debug symbols ----------------------------------------------------------


def _tree(tmp_path: Path, members: list[Member], overrides: dict[str, Any] | None = None) -> Path:
    return write_artifact(tmp_path, [*plugin_members(), *members], manifest(**(overrides or {})))


def test_daemons_built_with_the_release_flags_pass_the_hardening_check(tmp_path: Path) -> None:
    artifact = _tree(tmp_path, hardened_members(tmp_path))
    result = _run(static.check_hardening, artifact)
    assert result.failed is False, result.evidence
    assert "fortified calls" in result.summary


def test_daemons_built_without_the_release_flags_fail_naming_each_missing_protection(tmp_path: Path) -> None:
    plain = compiled_program(tmp_path, "-O0", "-fno-stack-protector", "-Wl,-z,norelro")
    members = [Member(f"{ROOT}/{path}", plain, mode=0o755) for path in static.HARDENED_FILES]
    result = _run(static.check_hardening, _tree(tmp_path, members))
    assert result.failed is True
    assert "sbin/slurmd: no __stack_chk_fail (not built with -fstack-protector-strong)" in result.evidence
    assert "sbin/slurmd: no GNU_RELRO segment (not linked with -z relro)" in result.evidence
    assert any("not built with -D_FORTIFY_SOURCE" in line for line in result.evidence)


def test_a_missing_daemon_fails_the_hardening_check(tmp_path: Path) -> None:
    members = [member for member in hardened_members(tmp_path) if not member.name.endswith("sbin/slurmdbd")]
    result = _run(static.check_hardening, _tree(tmp_path, members))
    assert result.evidence == ["sbin/slurmdbd: not in the artifact"]


def _split(tmp_path: Path, program: bytes) -> tuple[bytes, bytes, str]:
    """`program` split the way the build does: (stripped with a debug link, debug file, build id)."""
    path = tmp_path / "split-program"
    path.write_bytes(program)
    debug = tmp_path / "split-program.debug"
    subprocess.run(["objcopy", "--only-keep-debug", str(path), str(debug)], check=True)
    subprocess.run(["strip", "--strip-unneeded", str(path)], check=True)
    subprocess.run(["objcopy", f"--add-gnu-debuglink={debug}", str(path)], check=True)
    notes = subprocess.run(["readelf", "--notes", str(path)], capture_output=True, text=True, check=True).stdout
    build_id = re.search(r"Build ID: ([0-9a-f]+)", notes)
    assert build_id, notes
    return path.read_bytes(), debug.read_bytes(), build_id[1]


def _debug_check(tmp_path: Path, members: list[Member], companion_ids: set[str] | None) -> CheckRecorder:
    artifact_path = _tree(tmp_path, members, {"debug_symbols": {"artifact": "x-debug.tar.gz", "sha256": "0" * 64}})
    artifact = open_artifact(scan_tarball(artifact_path))
    recorder = CheckRecorder("static: debug symbols")
    static.check_debug_symbols(artifact, static.collect_tree_facts(artifact), companion_ids, recorder=recorder)
    return recorder


def test_stripped_daemons_whose_symbols_are_in_the_companion_pass(tmp_path: Path) -> None:
    stripped, _, build_id = _split(tmp_path, compiled_program(tmp_path, "-g", "-Wl,--build-id=sha1"))
    members = [Member(f"{ROOT}/{path}", stripped, mode=0o755) for path in static.HARDENED_FILES]
    result = _debug_check(tmp_path, members, {build_id})
    assert result.failed is False, result.evidence


def test_a_build_id_missing_from_the_companion_fails_naming_the_file(tmp_path: Path) -> None:
    stripped, _, build_id = _split(tmp_path, compiled_program(tmp_path, "-g", "-Wl,--build-id=sha1"))
    members = [Member(f"{ROOT}/{path}", stripped, mode=0o755) for path in static.HARDENED_FILES]
    result = _debug_check(tmp_path, members, {"0" * 40})
    assert result.failed is True
    assert f"sbin/slurmd: build id {build_id} has no debug file in the companion" in result.evidence


def test_an_unstripped_daemon_fails_the_debug_symbols_check(tmp_path: Path) -> None:
    unstripped = compiled_program(tmp_path, "-g", "-Wl,--build-id=sha1")
    members = [Member(f"{ROOT}/{path}", unstripped, mode=0o755) for path in static.HARDENED_FILES]
    result = _debug_check(tmp_path, members, None)
    assert result.failed is True
    assert "sbin/slurmctld: still has debug information" in result.evidence
    assert "sbin/slurmctld: no debug file (.gnu_debuglink)" in result.evidence
