"""End to end: the e2e build is a release build — hardened, stripped, its symbols in the -debug companion, with
slurm-factory's patches, the contribs and pkg-config file a site expects, and a main tarball small enough to copy
around. Sizes are reported, not asserted beyond the goal the issue set."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import docker
import pytest
from elftools.elf.elffile import ELFFile

from slurm_factory.artifact import debug_companion
from tests.e2e.helpers import ROOT, Build, report_measurement

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

MAX_MAIN_TARBALL = 15_000_000


def _elf(data: bytes) -> ELFFile:
    return ELFFile(io.BytesIO(data))


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def trees(build: Build) -> tuple[dict[str, bytes], dict[str, bytes]]:
    return _members(build.artifact), _members(debug_companion(build.artifact))


def _build_id(elf: ELFFile) -> str | None:
    section = elf.get_section_by_name(".note.gnu.build-id")
    for note in section.iter_notes() if section is not None else []:
        if note["n_type"] == "NT_GNU_BUILD_ID":
            return str(note["n_desc"])
    return None


def test_the_main_tarball_is_stripped_and_small(build: Build, trees: tuple[dict[str, bytes], dict[str, bytes]]) -> None:
    main, _ = trees
    size = build.artifact.stat().st_size
    companion = debug_companion(build.artifact)
    report_measurement(f"release tarball {size / 1e6:.1f} MB, -debug companion {companion.stat().st_size / 1e6:.1f} MB")
    assert size <= MAX_MAIN_TARBALL
    assert not [name for name in main if "/lib/debug/" in name]
    assert _elf(main[f"{ROOT}/sbin/slurmd"]).get_section_by_name(".debug_info") is None


def test_every_stripped_elf_files_build_id_is_in_the_companion(
    trees: tuple[dict[str, bytes], dict[str, bytes]],
) -> None:
    main, debug = trees
    debug_files = {name.rsplit("/.build-id/", 1)[1] for name in debug if "/.build-id/" in name}
    linked = []
    for name, data in main.items():
        if not data.startswith(b"\x7fELF"):
            continue
        elf = _elf(data)
        if elf.get_section_by_name(".gnu_debuglink") is None:
            continue
        build_id = _build_id(elf)
        assert build_id, name
        assert f"{build_id[:2]}/{build_id[2:]}.debug" in debug_files, name
        linked.append(name)
    assert len(linked) > 100


def test_slurmd_is_hardened_and_built_without_slurms_debug_mode(
    trees: tuple[dict[str, bytes], dict[str, bytes]],
) -> None:
    main, debug = trees
    slurmd = _elf(main[f"{ROOT}/sbin/slurmd"])
    imports = {symbol.name for symbol in slurmd.get_section_by_name(".dynsym").iter_symbols() if symbol.name}
    assert "__stack_chk_fail" in imports
    assert any(re.fullmatch(r"__\w+_chk", name) and name != "__stack_chk_fail" for name in imports), "no fortify"
    build_id = _build_id(slurmd)
    assert build_id is not None
    symbols = _elf(debug[f"{ROOT}/lib/debug/.build-id/{build_id[:2]}/{build_id[2:]}.debug"])
    producers = {
        str(die.attributes["DW_AT_producer"].value, "utf-8", "replace")
        for unit in symbols.get_dwarf_info().iter_CUs()
        for die in [unit.get_top_DIE()]
        if "DW_AT_producer" in die.attributes
    }
    assert producers
    assert all(" -O2" in producer for producer in producers), producers
    assert not any(" -O1" in producer or " -O0" in producer for producer in producers), "Slurm's debug mode (-O1)"
    assert any("-fstack-protector-strong" in producer for producer in producers)


def test_the_tree_has_libpmi_slurm_pc_the_contribs_and_the_pam_loaders(
    build: Build, trees: tuple[dict[str, bytes], dict[str, bytes]]
) -> None:
    main, _ = trees
    for relative in ("lib/libpmi.so.0", "lib/libpmi2.so.0", "bin/seff", "bin/sjstat", "bin/sgather",
                     "lib/security/pam_slurm_adopt.so", "lib/security/real/pam_slurm_adopt.so"):  # fmt: skip
        assert any(name.startswith(f"{ROOT}/{relative}") for name in main), relative
    pc = main[f"{ROOT}/lib/pkgconfig/slurm.pc"].decode()
    assert "libdir=${pcfiledir}/../../lib" in pc and "Version: 24.11.5" in pc
    assert 'use lib "$FindBin::RealBin/../lib/perl5"' in main[f"{ROOT}/bin/seff"].decode()
    loader = _elf(main[f"{ROOT}/lib/security/pam_slurm_adopt.so"])
    needed = [
        tag.needed for tag in loader.get_section_by_name(".dynamic").iter_tags() if tag.entry.d_tag == "DT_NEEDED"
    ]
    assert not [name for name in needed if "slurm" in name], "the loader must not need libslurm"
    manifest = build.result["manifest"]
    assert [patch["name"] for patch in manifest["patches"]] == [
        "01-relocatable-plugin-dir.patch", "02-mysql-new-handle-after-create-db.patch",
    ]  # fmt: skip
    assert "torque" not in manifest["contribs"] and "perlapi" in manifest["contribs"]
    assert not [name for name in main if name.endswith(("/bin/qsub", "/bin/mpiexec", "/bin/bsub"))]


def test_the_manifest_sidecar_names_the_companion_and_its_sha256(build: Build) -> None:
    companion = debug_companion(build.artifact)
    recorded = json.loads(build.artifact.with_name(build.artifact.name + ".manifest.json").read_text())
    assert recorded["debug_symbols"]["artifact"] == companion.name
    assert recorded["debug_symbols"]["sha256"] == companion.with_name(companion.name + ".sha256").read_text().split()[0]
    assert build.result["debug_symbols"] == str(build.link.with_name(companion.name))


def test_the_manifest_records_the_base_image_built_from_and_the_home_pins_it(
    build: Build, docker_client: docker.DockerClient
) -> None:
    recorded = json.loads(build.artifact.with_name(build.artifact.name + ".manifest.json").read_text())
    base = recorded["toolchain"]["base_image"]
    image_id = docker_client.images.get(base).id
    pins = json.loads((build.home / "base-images.json").read_text())

    assert recorded["toolchain"]["base_image_id"] == image_id
    assert pins["pins"][base]["image_id"] == image_id
    assert f"base image {base} is {image_id.removeprefix('sha256:')[:12]}, as recorded on" in build.log_text
