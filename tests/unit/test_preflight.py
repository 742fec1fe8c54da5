"""Preflight through the Python API: what `build(dry_run=True)` checks and reports before any container."""

from __future__ import annotations

from pathlib import Path

import pytest

from slurm_factory.builder import build
from slurm_factory.config import Settings
from slurm_factory.exceptions import ConfigurationError, SourceChecksumError
from slurm_factory.preflight import writable_directory

NATIVE = {"slurm_version": "24.11.5", "toolchain": "trixie", "engine": "native"}


def test_a_dry_run_reports_its_checks_and_a_summary_without_creating_the_home(settings: Settings) -> None:
    result = build(**NATIVE, settings=settings, dry_run=True)

    assert result.preflight is not None
    report = result.preflight.to_json()
    assert [check["subject"] for check in report["checks"]] == ["home", "source"]
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
