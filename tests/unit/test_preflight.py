"""Preflight through the Python API: what `build(dry_run=True)` checks and reports before any container."""

from __future__ import annotations

from pathlib import Path

import pytest

from slurm_factory.builder import build, build_compiler
from slurm_factory.choices import Arch
from slurm_factory.config import Settings
from slurm_factory.exceptions import ConfigurationError, SourceChecksumError
from slurm_factory.preflight import writable_directory

NATIVE = {"slurm_version": "24.11.5", "toolchain": "trixie", "engine": "native"}


def test_a_dry_run_reports_its_checks_and_a_summary_without_creating_the_home(settings: Settings) -> None:
    result = build(**NATIVE, settings=settings, dry_run=True)

    assert result.preflight is not None
    report = result.preflight.to_json()
    assert [check["subject"] for check in report["checks"]] == ["home", "source", "base image"]
    assert f"{settings.home} will be created" in report["checks"][0]["finding"]
    assert report["release"] == "Slurm 24.11.5 (24-11-5-1)" and report["engine"] == "native"
    assert report["sign"] == "no" and report["publish"] == "no"
    assert not settings.home.exists()
    assert result.to_json()["preflight"] == report


def test_a_dry_run_refuses_a_source_with_another_sha256(settings: Settings, tmp_path: Path) -> None:
    wrong = tmp_path / "slurm-24.11.5.tar.gz"
    wrong.write_bytes(b"not the release")
    with pytest.raises(SourceChecksumError, match=r"does not match Slurm 24\.11\.5"):
        build(**NATIVE, slurm_source=str(wrong), settings=settings, dry_run=True)


def test_plan_dir_may_be_a_string(settings: Settings, tmp_path: Path) -> None:
    result = build(**NATIVE, settings=settings, dry_run=True, plan_dir=str(tmp_path / "context"))  # type: ignore[arg-type]
    assert result.plan_dir == tmp_path / "context" and (tmp_path / "context" / "Dockerfile").is_file()


def test_a_float_release_through_the_api_is_refused_not_guessed(settings: Settings) -> None:
    with pytest.raises(ConfigurationError, match=r"^slurm_version=24\.1: expected a string, not float$"):
        build(slurm_version=24.10, toolchain="trixie", engine="native", settings=settings, dry_run=True)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"file": "x"}, "is a file, not a directory"),
        ({"dir/file": "x"}, "is a file, not a directory"),
    ],
)
def test_writable_directory_refuses_files_on_the_way(tmp_path: Path, layout: dict[str, str], message: str) -> None:
    for relative, text in layout.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    target = tmp_path / next(iter(layout)) / "mirror"
    with pytest.raises(ConfigurationError, match=message):
        writable_directory(target, "--publish-url")


def test_writable_directory_leaves_nothing_behind(tmp_path: Path) -> None:
    existing = writable_directory(tmp_path, "home")
    created = writable_directory(tmp_path / "new" / "deeper", "home")
    assert existing.finding.endswith("is writable") and "will be created in" in created.finding
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def amd64_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("slurm_factory.request.host_arch", lambda: Arch.AMD64)


def _emulation(monkeypatch: pytest.MonkeyPatch, problem: str | None) -> None:
    monkeypatch.setattr("slurm_factory.emulation.emulation_problem", lambda arch, binfmt_dir: problem)


def test_a_dry_run_for_another_arch_checks_that_this_host_runs_its_programs(
    settings: Settings, amd64_host: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _emulation(monkeypatch, None)
    result = build(**NATIVE, arch="arm64", emulate=True, settings=settings, dry_run=True)

    assert result.preflight is not None
    report = result.preflight.to_json()
    assert [check["subject"] for check in report["checks"]] == ["home", "source", "base image", "emulation"]
    assert report["arch"] == "arm64, built under qemu emulation in arm64v8/debian:trixie"
    cross = build(**NATIVE, arch="arm64", settings=settings, dry_run=True).preflight
    assert cross is not None and cross.summary["arch"].startswith("arm64, cross-compiled on this amd64 host")


def test_a_dry_run_for_another_arch_fails_where_the_host_cannot_run_its_programs(
    settings: Settings, amd64_host: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _emulation(monkeypatch, "binfmt_misc is not mounted at /proc/sys/fs/binfmt_misc")
    with pytest.raises(ConfigurationError) as caught:
        build(**NATIVE, arch="arm64", emulate=True, settings=settings, dry_run=True)
    assert str(caught.value) == (
        "--arch arm64 (built under emulation) needs this host to run arm64 binaries, and it cannot: binfmt_misc is "
        "not mounted at /proc/sys/fs/binfmt_misc"
    )
    assert build(**NATIVE, settings=settings, dry_run=True).preflight is not None  # its own arch needs no qemu


def test_a_compiler_dry_run_reports_its_checks_and_where_it_pushes(
    settings: Settings, amd64_host: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _emulation(monkeypatch, None)
    local = build_compiler(compiler_version="13.4.0", toolchain="trixie", settings=settings, dry_run=True)
    assert local.preflight is not None
    assert [check.subject for check in local.preflight.checks] == ["home"]
    assert local.preflight.summary["push"] == "the local buildcache"
    assert local.preflight.summary["arch"] == "amd64"
    assert local.to_json()["preflight"] == local.preflight.to_json()

    mirror, keyring = tmp_path / "mirror", tmp_path / "gnupg"
    keyring.mkdir()
    monkeypatch.setenv("GNUPGHOME", str(keyring))
    arm64 = build_compiler(
        compiler_version="13.4.0", toolchain="trixie", arch="arm64", publish="all", publish_url=f"file://{mirror}",
        signing_key="0x" + "AB" * 20, settings=settings, dry_run=True,
    )  # fmt: skip
    assert arm64.preflight is not None
    checks = {check.subject: check.finding for check in arm64.preflight.checks}
    assert list(checks) == ["home", "--publish-url", "emulation", "signing key"]
    assert checks["signing key"] == f"0x{'AB' * 20} is looked up in {keyring} when the build starts"
    assert arm64.preflight.summary["push"] == f"the local buildcache and file://{mirror}"
    assert arm64.preflight.summary["artifact"].endswith("gcc-13.4.0-trixie-arm64-compiler.tar.gz")
