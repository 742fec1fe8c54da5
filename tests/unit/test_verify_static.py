"""Static verification on the host: RUNPATHs of real ELF files (compiled here with gcc), vendor libraries,
build-container paths in text files, expected plugins — each check passes on a clean tree and fails, with the
evidence, on a broken one."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from slurm_factory.catalog.plugins import expected_plugins
from slurm_factory.verify import static
from slurm_factory.verify.artifact_reader import open_artifact, scan_tarball
from slurm_factory.verify.report import CheckRecorder

ROOT = "slurm-24.11.5-trixie"
PREFIX = f"/opt/slurm-factory-build/{ROOT}"
SPACK_VIEW = "/opt/slurm-factory/spack/view"


def _shared_object(tmp_path: Path, rpath: str) -> bytes:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to make a real ELF file")
    source = tmp_path / "x.c"
    source.write_text("int slurm_factory_probe(void) { return 1; }\n")
    output = tmp_path / "x.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(output), str(source), f"-Wl,-rpath,{rpath}",
                    "-Wl,--enable-new-dtags"], check=True)  # fmt: skip
    return output.read_bytes()


def _artifact(tmp_path: Path, files: dict[str, bytes], manifest: dict[str, Any] | None = None) -> Path:
    document = {
        "tool": {"name": "slurm-factory"},
        "toolchain": {"name": "trixie", "base_image": "debian:trixie"},
        "slurm": {"version": "24.11.5", "series": "24.11"},
        "build_prefix": PREFIX,
        "build_paths": [PREFIX, SPACK_VIEW],
        "gpu": False,
        **(manifest or {}),
    }
    plugins = {f"lib/slurm/{name}": b"plugin" for name in expected_plugins("24.11", gpu=False)}
    path = tmp_path / "slurm-24.11-trixie-software.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name, data in {**plugins, **files, "manifest.json": json.dumps(document).encode()}.items():
            info = tarfile.TarInfo(f"{ROOT}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _run(check: Any, artifact_path: Path, *with_artifact: bool) -> CheckRecorder:
    artifact = open_artifact(scan_tarball(artifact_path))
    facts = static.collect_tree_facts(artifact)
    recorder = CheckRecorder("static")
    if with_artifact:
        check(artifact, facts, recorder)
    else:
        check(facts, recorder)
    return recorder


def test_origin_relative_runpath_passes(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path, {"lib/libgood.so": _shared_object(tmp_path, "$ORIGIN/../lib")})
    assert _run(static.check_runpaths, artifact, True).failed is False


def test_runpath_into_the_build_prefix_fails_naming_file_and_runpath(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path, {"lib/libbad.so": _shared_object(tmp_path, f"{PREFIX}/lib")})
    result = _run(static.check_runpaths, artifact, True)
    assert result.failed is True
    assert result.evidence == [f"lib/libbad.so: RUNPATH {PREFIX}/lib ({PREFIX}/lib names the build prefix)"]


def test_text_file_naming_a_spack_view_path_fails(tmp_path: Path) -> None:
    pkgconfig = f"prefix={SPACK_VIEW}\nlibdir=${{prefix}}/lib\n".encode()
    artifact = _artifact(tmp_path, {"lib/pkgconfig/slurm.pc": pkgconfig, "etc/clean.txt": b"nothing here"})
    result = _run(static.check_no_prefix_in_text, artifact, True)
    assert result.failed is True
    assert result.evidence == [f"lib/pkgconfig/slurm.pc: {SPACK_VIEW}"]


def test_shipped_vendor_library_fails_and_a_clean_tree_passes(tmp_path: Path) -> None:
    broken = _artifact(tmp_path, {"lib/libnvidia-ml.so.1": b"stub"})
    assert _run(static.check_no_vendor_libraries, broken).evidence == ["lib/libnvidia-ml.so.1"]
    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    clean = _artifact(clean_dir, {})
    assert _run(static.check_no_vendor_libraries, clean).failed is False
    assert _run(static.check_expected_plugins, clean, True).failed is False


def test_gpu_artifact_without_gpu_plugins_fails_the_plugin_check(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path, {}, {"gpu": True})
    result = _run(static.check_expected_plugins, artifact, True)
    assert result.failed is True
    assert sorted(result.evidence) == ["gpu_nvml.so", "gpu_rsmi.so"]
