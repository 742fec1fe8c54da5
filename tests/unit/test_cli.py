"""The `slurm-factory` command line: every option reaches the Python API, errors are one line with the right exit
code, and the commands that need no Docker (dry run, plan dir, list, verify, build-compiler) behave as documented."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from slurm_factory import __version__, builder, cli
from slurm_factory.builder import BuildResult
from slurm_factory.catalog import load_releases, load_toolchains
from slurm_factory.catalog.compilers import load_gcc_catalog
from slurm_factory.config import Settings, load_settings
from slurm_factory.exceptions import EXIT_USAGE
from slurm_factory.plan import BuildPlan, make_plan
from slurm_factory.progress import SilentDisplay
from slurm_factory.request import make_request
from tests.store_helpers import stored_artifact

ALL_TOOLCHAINS = ("resolute", "noble", "jammy", "rockylinux10", "rockylinux9", "rockylinux8", "trixie", "bookworm")
NATIVE_TRIXIE = ["--engine", "native", "--toolchain", "trixie", "--slurm-version", "24.11.5"]
ARTIFACT_NAME = "slurm-24.11-trixie-software.tar.gz"

# What build() receives when build-slurm gets no option at all (the defaults of docs/reference/options.md).
DEFAULT_KWARGS: dict[str, Any] = {
    "arch": None,
    "emulate": False,
    "slurm_version": "25.11",
    "toolchain": "noble",
    "gpu": False,
    "package": "tarball",
    "package_release": None,
    "package_maintainer": None,
    "verify": False,
    "upgrade_from": None,
    "no_cache": False,
    "buildcache": "none",
    "publish": "none",
    "enable_hierarchy": False,
    "signing_key": None,
    "gpg_private_key": None,
    "gpg_passphrase": None,
    "compiler_version": None,
    "use_local_buildcache": False,
    "engine": "spack",
    "slurm_source": None,
    "spack_source": None,
    "spack_packages_source": None,
    "python_wheels": None,
    "base_image": None,
    "buildcache_url": None,
    "publish_url": None,
    "s3_endpoint_url": None,
    "os_packages": None,
    "patches": None,
    "releases_file": None,
    "spack_packages": None,
    "dry_run": False,
    "plan_dir": None,
}
# Passed through but not options of their own.
NON_OPTION_KWARGS = ("settings", "display")


def _invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli.app, list(args), env=env)


def _error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def _native_trixie_plan() -> BuildPlan:
    """The plan the CLI makes for NATIVE_TRIXIE, with the settings it loads from the (isolated) environment."""
    request = make_request(slurm_version="24.11.5", toolchain="trixie", engine="native")
    return make_plan(request, load_settings())


class _BuildRecorder:
    """Stands in for `slurm_factory.builder.build`: records its keyword arguments, returns a dry-run result."""

    def __init__(self, result: BuildResult) -> None:
        self.result = result
        self.calls: list[dict[str, Any]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> BuildResult:
        assert not args, "the CLI must pass every value by keyword"
        self.calls.append(kwargs)
        return self.result

    @property
    def kwargs(self) -> dict[str, Any]:
        assert len(self.calls) == 1, f"build() called {len(self.calls)} times"
        return self.calls[0]

    def option_kwargs(self) -> dict[str, Any]:
        return {key: value for key, value in self.kwargs.items() if key not in NON_OPTION_KWARGS}


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> _BuildRecorder:
    plan = make_plan(make_request(slurm_version="24.11.5", toolchain="trixie", engine="native"), settings)
    recording = _BuildRecorder(BuildResult(plan=plan))
    monkeypatch.setattr(builder, "build", recording)
    return recording


# --- every build-slurm option reaches build() ----------------------------------------------------------------------

OPTION_CASES = [
    pytest.param(["--slurm-version", "24.11.5"], "slurm_version", "24.11.5", id="slurm-version"),
    pytest.param(["--toolchain", "rockylinux9"], "toolchain", "rockylinux9", id="toolchain"),
    pytest.param(["--gpu"], "gpu", True, id="gpu"),
    pytest.param(["--package", "deb"], "package", "deb", id="package"),
    pytest.param(["--package-release", "3"], "package_release", "3", id="package-release"),
    pytest.param(
        ["--package-maintainer", "HPC <hpc@example.org>"],
        "package_maintainer",
        "HPC <hpc@example.org>",
        id="package-maintainer",
    ),
    pytest.param(["--verify"], "verify", True, id="verify"),
    pytest.param(["--no-cache"], "no_cache", True, id="no-cache"),
    pytest.param(["--buildcache", "deps"], "buildcache", "deps", id="buildcache"),
    pytest.param(["--buildcache", "ALL"], "buildcache", "all", id="buildcache-case-insensitive"),
    pytest.param(["--publish", "slurm"], "publish", "slurm", id="publish"),
    pytest.param(["--enable-hierarchy"], "enable_hierarchy", True, id="enable-hierarchy"),
    pytest.param(["--signing-key", "0x5EED1234ABCD5678"], "signing_key", "0x5EED1234ABCD5678", id="signing-key"),
    pytest.param(["--gpg-private-key", "@/keys/signing.asc"], "gpg_private_key", "@/keys/signing.asc", id="gpg-key"),
    pytest.param(["--gpg-passphrase", "pass-on-argv"], "gpg_passphrase", "pass-on-argv", id="gpg-passphrase"),
    pytest.param(
        ["--gpg-passphrase-file", "{tmp}/passphrase"], "gpg_passphrase", "@{tmp}/passphrase", id="gpg-passphrase-file"
    ),
    pytest.param(["--use-local-buildcache"], "use_local_buildcache", True, id="use-local-buildcache"),
    pytest.param(["--compiler-version", "13.4.0"], "compiler_version", "13.4.0", id="compiler-version"),
    pytest.param(["--engine", "native"], "engine", "native", id="engine"),
    pytest.param(["--arch", "arm64"], "arch", "arm64", id="arch"),
    pytest.param(["--arch", "ARM64"], "arch", "arm64", id="arch-case-insensitive"),
    pytest.param(["--emulate"], "emulate", True, id="emulate"),
    pytest.param(
        ["--slurm-source", "/srv/slurm-24.11.5.tar.bz2"],
        "slurm_source",
        "/srv/slurm-24.11.5.tar.bz2",
        id="slurm-source",
    ),
    pytest.param(["--spack-source", "/srv/spack-v1.1.0"], "spack_source", "/srv/spack-v1.1.0", id="spack-source"),
    pytest.param(
        ["--spack-packages-source", "/srv/spack-packages"],
        "spack_packages_source",
        "/srv/spack-packages",
        id="spack-packages-source",
    ),
    pytest.param(["--python-wheels", "/srv/wheels"], "python_wheels", "/srv/wheels", id="python-wheels"),
    pytest.param(
        ["--base-image", "registry.example.org:5000/debian:trixie"],
        "base_image",
        "registry.example.org:5000/debian:trixie",
        id="base-image",
    ),
    pytest.param(["--buildcache-url", "s3://bucket/cache"], "buildcache_url", "s3://bucket/cache", id="buildcache-url"),
    pytest.param(["--publish-url", "file:///srv/mirror"], "publish_url", "file:///srv/mirror", id="publish-url"),
    pytest.param(
        ["--s3-endpoint-url", "http://127.0.0.1:9000"], "s3_endpoint_url", "http://127.0.0.1:9000", id="s3-endpoint"
    ),
    pytest.param(["--os-packages", "all"], "os_packages", "all", id="os-packages"),
    pytest.param(["--os-packages", "NONE"], "os_packages", "none", id="os-packages-case-insensitive"),
    pytest.param(["--spack-packages", "/srv/site.yaml"], "spack_packages", "/srv/site.yaml", id="spack-packages"),
    pytest.param(["--patch", "/srv/fix.patch"], "patches", ["/srv/fix.patch"], id="patch"),
    pytest.param(
        ["--patch", "/srv/b.patch", "--patch", "/srv/a.patch"],
        "patches",
        ["/srv/b.patch", "/srv/a.patch"],
        id="patch-repeated-in-order",
    ),
    pytest.param(["--releases-file", "/srv/releases.tsv"], "releases_file", "/srv/releases.tsv", id="releases-file"),
    pytest.param(["--upgrade-from", "/srv/old.tar.gz"], "upgrade_from", "/srv/old.tar.gz", id="upgrade-from"),
    pytest.param(["--dry-run"], "dry_run", True, id="dry-run"),
    pytest.param(["--plan-dir", "{tmp}/context"], "plan_dir", Path("{tmp}/context"), id="plan-dir"),
]


@pytest.mark.parametrize(("args", "kwarg", "expected"), OPTION_CASES)
def test_build_slurm_option_reaches_build_and_leaves_the_others_at_their_defaults(
    recorder: _BuildRecorder, tmp_path: Path, args: list[str], kwarg: str, expected: Any
) -> None:
    (tmp_path / "passphrase").write_text("pass-from-file\n", encoding="utf-8")
    args = [arg.format(tmp=tmp_path) for arg in args]
    if isinstance(expected, Path):
        expected = Path(str(expected).format(tmp=tmp_path))
    elif isinstance(expected, str):
        expected = expected.format(tmp=tmp_path)

    result = _invoke("build-slurm", *args)

    assert result.exit_code == 0, result.output
    assert recorder.option_kwargs() == {**DEFAULT_KWARGS, kwarg: expected}


def test_build_slurm_without_options_passes_the_spec_defaults(recorder: _BuildRecorder) -> None:
    result = _invoke("build-slurm")

    assert result.exit_code == 0, result.output
    assert recorder.option_kwargs() == DEFAULT_KWARGS
    assert set(recorder.kwargs) == {*DEFAULT_KWARGS, *NON_OPTION_KWARGS}


def test_build_alias_passes_options_like_build_slurm(recorder: _BuildRecorder) -> None:
    result = _invoke("build", "--toolchain", "jammy", "--slurm-version", "23.11", "--gpu")

    assert result.exit_code == 0, result.output
    assert recorder.option_kwargs() == {**DEFAULT_KWARGS, "toolchain": "jammy", "slurm_version": "23.11", "gpu": True}


def test_all_options_together_reach_build(recorder: _BuildRecorder, tmp_path: Path) -> None:
    result = _invoke(
        "build-slurm",
        *NATIVE_TRIXIE,
        "--gpu",
        "--no-cache",
        "--signing-key",
        "0xABCD12345EED0000",
        "--publish",
        "all",
        "--dry-run",
        "--plan-dir",
        str(tmp_path / "ctx"),
    )

    assert result.exit_code == 0, result.output
    assert recorder.option_kwargs() == {
        **DEFAULT_KWARGS,
        "engine": "native",
        "toolchain": "trixie",
        "slurm_version": "24.11.5",
        "gpu": True,
        "no_cache": True,
        "signing_key": "0xABCD12345EED0000",
        "publish": "all",
        "dry_run": True,
        "plan_dir": tmp_path / "ctx",
    }


def test_json_output_gives_build_a_silent_display(recorder: _BuildRecorder) -> None:
    result = _invoke("build-slurm", "--dry-run", "--json")

    assert result.exit_code == 0, result.output
    assert isinstance(recorder.kwargs["display"], SilentDisplay)


def test_project_name_option_reaches_the_settings_given_to_build(recorder: _BuildRecorder) -> None:
    result = _invoke("--project-name", "production", "build-slurm")

    assert result.exit_code == 0, result.output
    assert isinstance(recorder.kwargs["settings"], Settings)
    assert recorder.kwargs["settings"].project_name == "production"


def test_if_project_name_environment_reaches_the_settings_given_to_build(recorder: _BuildRecorder) -> None:
    result = _invoke("build-slurm", env={"IF_PROJECT_NAME": "from-env"})

    assert result.exit_code == 0, result.output
    assert recorder.kwargs["settings"].project_name == "from-env"


def test_project_name_option_wins_over_if_project_name(recorder: _BuildRecorder) -> None:
    result = _invoke("--project-name", "from-option", "build-slurm", env={"IF_PROJECT_NAME": "from-env"})

    assert result.exit_code == 0, result.output
    assert recorder.kwargs["settings"].project_name == "from-option"


def test_project_name_defaults_to_slurm_factory_and_home_to_slurm_factory_home(
    recorder: _BuildRecorder, tmp_path: Path
) -> None:
    result = _invoke("build-slurm")

    assert result.exit_code == 0, result.output
    assert recorder.kwargs["settings"].project_name == "slurm-factory"
    assert recorder.kwargs["settings"].home == tmp_path / "sf-home"


def test_invalid_project_name_is_a_usage_error_before_build(recorder: _BuildRecorder) -> None:
    result = _invoke("--project-name", "Not Valid", "build-slurm")

    assert result.exit_code == EXIT_USAGE
    assert recorder.calls == []
    assert len(_error_lines(result)) == 1
    assert "--project-name" in _error_lines(result)[0]


@pytest.mark.parametrize(
    ("option", "value"),
    [("--engine", "docker"), ("--buildcache", "some"), ("--publish", "everything")],
)
def test_invalid_choice_is_a_usage_error_before_build(recorder: _BuildRecorder, option: str, value: str) -> None:
    result = _invoke("build-slurm", option, value)

    assert result.exit_code == EXIT_USAGE
    assert recorder.calls == []
    assert option in result.stderr


# --- real build-slurm behaviour (no Docker: everything here is refused or planned before a container) ----------------


def test_unknown_toolchain_prints_one_error_line_listing_toolchains_and_exits_2() -> None:
    result = _invoke("build-slurm", "--toolchain", "centos7")

    assert result.exit_code == EXIT_USAGE
    errors = _error_lines(result)
    assert len(errors) == 1, result.stderr
    assert "--toolchain" in errors[0]
    assert "'centos7'" in errors[0]
    for name in ALL_TOOLCHAINS:
        assert name in errors[0]
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_verbose_prints_the_traceback_with_the_error() -> None:
    result = _invoke("-v", "build-slurm", "--toolchain", "centos7")

    assert result.exit_code == EXIT_USAGE
    assert "Traceback (most recent call last)" in result.stderr
    assert "ConfigurationError" in result.stderr
    assert len(_error_lines(result)) == 1


def test_verbose_does_not_stick_to_the_next_invocation() -> None:
    _invoke("-v", "build-slurm", "--toolchain", "centos7")

    result = _invoke("build-slurm", "--toolchain", "centos7")

    assert result.exit_code == EXIT_USAGE
    assert "Traceback" not in result.output


def test_error_message_quotes_user_input_verbatim_even_with_brackets() -> None:
    result = _invoke("build-slurm", "--toolchain", "[/x]")

    assert result.exit_code == EXIT_USAGE
    errors = _error_lines(result)
    assert len(errors) == 1
    assert "'[/x]'" in errors[0]


def test_default_spack_engine_dry_run_prints_dockerfile_environment_and_script() -> None:
    result = _invoke("build-slurm", "--toolchain", "trixie", "--slurm-version", "24.11.5", "--dry-run")

    assert result.exit_code == 0, result.stderr
    assert "engine spack" in result.stdout
    assert 'specs:\n  - "slurm@24-11-5-1 ' in result.stdout
    assert 'spack -e "$ENV_DIR" install' in result.stdout
    assert "FROM debian:trixie AS toolchain" in result.stdout


def test_spack_engine_publish_plan_imports_the_key_from_the_tmpfs_and_pushes_signed() -> None:
    result = _invoke(
        "build-slurm", "--toolchain", "trixie", "--publish", "slurm", "--signing-key", "0x5EED1234ABCD5678", "--dry-run"
    )

    assert result.exit_code == 0, result.stderr
    assert 'spack -e "$ENV_DIR" gpg trust "$SECRETS/signing-key.asc"' in result.stdout
    assert "SECRETS=/run/slurm-factory-secrets" in result.stdout
    assert '--key "$SLURM_FACTORY_SIGNING_KEY" --update-index --only package slurm-factory-publish' in result.stdout


def test_dry_run_prints_dockerfile_build_script_and_artifact_path(tmp_path: Path) -> None:
    plan = _native_trixie_plan()

    result = _invoke("build-slurm", *NATIVE_TRIXIE, "--dry-run")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"# artifact {tmp_path / 'sf-home' / 'builds' / ARTIFACT_NAME}" in out
    assert plan.image.dockerfile in out
    assert "FROM debian:trixie" in out
    build_script = plan.context_files()["build-native.sh"].content
    assert build_script in out
    assert "--prefix=/opt/slurm-factory-build/slurm-24.11.5-trixie" in out
    assert f"# build {plan.build_id}: Slurm 24.11.5" in out
    assert plan.request.slurm.sha256 in out


def test_dry_run_prints_every_file_of_the_build_context() -> None:
    plan = _native_trixie_plan()

    result = _invoke("build-slurm", *NATIVE_TRIXIE, "--dry-run")

    assert result.exit_code == 0, result.output
    for name, plan_file in plan.context_files().items():
        assert name in result.stdout
        assert plan_file.content in result.stdout, f"{name} is not printed in full"


def test_dry_run_creates_no_cache_directories(tmp_path: Path) -> None:
    result = _invoke("build-slurm", *NATIVE_TRIXIE, "--dry-run")

    assert result.exit_code == 0, result.output
    assert not (tmp_path / "sf-home").exists()


def test_dry_run_checks_the_source_sha256_and_names_the_path_verbatim(tmp_path: Path) -> None:
    source = tmp_path / "[old]" / "slurm-24.11.5.tar.bz2"
    source.parent.mkdir()
    source.write_bytes(b"the wrong tarball: refused by the preflight of --dry-run")

    result = _invoke("build-slurm", *NATIVE_TRIXIE, "--dry-run", "--slurm-source", str(source))

    assert result.exit_code == EXIT_USAGE, result.output
    first_line = result.stderr.splitlines()[0]
    assert first_line.startswith(f"error: --slurm-source '{source.resolve()}': sha256 ")
    assert "does not match Slurm 24.11.5" in first_line


def test_plan_dir_with_dry_run_writes_the_build_context(tmp_path: Path) -> None:
    directory = tmp_path / "context"

    result = _invoke("build-slurm", *NATIVE_TRIXIE, "--dry-run", "--plan-dir", str(directory))

    assert result.exit_code == 0, result.output
    plan = _native_trixie_plan()
    assert (directory / "Dockerfile").read_text(encoding="utf-8") == plan.image.dockerfile
    script = directory / "build-native.sh"
    assert script.read_text(encoding="utf-8") == plan.context_files()["build-native.sh"].content
    assert os.access(script, os.X_OK)
    assert script.stat().st_mode & 0o111 == 0o111
    modulefile = directory / "artifact" / "modules" / "slurm" / "24.11.5.lua"
    assert modulefile.is_file()
    assert 'setenv("SLURM_ROOT", root)' in modulefile.read_text(encoding="utf-8")
    assert os.access(directory / "artifact" / "sbin" / "slurm-factory-setup", os.X_OK)
    assert f"build context written to {directory}" in result.stdout
    assert not (tmp_path / "sf-home" / "builds").exists()


def test_dry_run_json_is_parseable_and_marks_the_dry_run() -> None:
    plan = _native_trixie_plan()

    result = _invoke("build-slurm", *NATIVE_TRIXIE, "--dry-run", "--json")

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["dry_run"] is True
    assert document["build_id"] == plan.build_id
    assert document["artifact"] is None
    assert document["sha256"] is None


def test_secret_on_the_command_line_prints_exactly_one_warning_and_not_the_secret() -> None:
    result = _invoke(
        "build-slurm",
        "--gpg-passphrase",
        "hunter2-TOPSECRET",
        "--signing-key",
        "0x5EED1234ABCD5678",
        "--engine",
        "native",
        "--toolchain",
        "trixie",
        "--dry-run",
    )

    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.stderr
    assert "--gpg-passphrase" in warnings[0]
    assert "command line" in warnings[0]
    assert "hunter2-TOPSECRET" not in result.output
    assert result.exit_code == 0


def test_passphrase_file_prints_no_warning(tmp_path: Path) -> None:
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("hunter2-TOPSECRET\n", encoding="utf-8")

    result = _invoke(
        "build-slurm", *NATIVE_TRIXIE, "--signing-key", "0x5EED1234ABCD5678", "--gpg-passphrase-file", str(passphrase)
    )

    assert "warning:" not in result.stderr
    assert "hunter2-TOPSECRET" not in result.output


def test_passphrase_and_passphrase_file_together_are_a_usage_error(tmp_path: Path) -> None:
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("secret\n", encoding="utf-8")

    result = _invoke(
        "build-slurm",
        *NATIVE_TRIXIE,
        "--signing-key",
        "0x5EED1234ABCD5678",
        "--gpg-passphrase",
        "secret",
        "--gpg-passphrase-file",
        str(passphrase),
    )

    assert result.exit_code == EXIT_USAGE
    errors = _error_lines(result)
    assert len(errors) == 1
    assert "--gpg-passphrase-file" in errors[0]
    assert "Traceback" not in result.output


def test_unreadable_passphrase_file_is_a_usage_error(tmp_path: Path) -> None:
    result = _invoke("build-slurm", *NATIVE_TRIXIE, "--gpg-passphrase-file", str(tmp_path / "missing"))

    assert result.exit_code == EXIT_USAGE
    assert "--gpg-passphrase-file" in _error_lines(result)[0]


@pytest.mark.parametrize("content", ["", "\n"])
def test_an_empty_passphrase_file_is_a_usage_error_not_an_empty_passphrase(tmp_path: Path, content: str) -> None:
    passphrase = tmp_path / "passphrase"
    passphrase.write_text(content, encoding="utf-8")

    result = _invoke(
        "build-slurm", *NATIVE_TRIXIE, "--signing-key", "0x5EED1234ABCD5678", "--gpg-passphrase-file", str(passphrase)
    )

    assert result.exit_code == EXIT_USAGE
    assert _error_lines(result)[0] == (
        f"error: --gpg-passphrase-file: {passphrase} is empty; the signing key's passphrase was expected there"
    )


def test_an_empty_passphrase_option_is_a_usage_error() -> None:
    result = _invoke("build-slurm", *NATIVE_TRIXIE, "--signing-key", "0x5EED1234ABCD5678", "--gpg-passphrase", "")
    assert result.exit_code == EXIT_USAGE
    assert "--gpg-passphrase is empty" in _error_lines(result)[0]


def test_an_empty_passphrase_variable_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_FACTORY_GPG_PASSPHRASE", "")
    result = _invoke("build-slurm", *NATIVE_TRIXIE, "--signing-key", "0x5EED1234ABCD5678", "--dry-run")
    assert result.exit_code == EXIT_USAGE
    assert "SLURM_FACTORY_GPG_PASSPHRASE is set but empty" in _error_lines(result)[0]


# --- the other commands -------------------------------------------------------------------------------------------


def test_version_option_prints_the_version() -> None:
    result = _invoke("--version")

    assert result.exit_code == 0
    assert result.stdout.strip() == f"slurm-factory {__version__}"


def test_list_shows_all_toolchains_and_releases() -> None:
    result = _invoke("list")

    assert result.exit_code == 0, result.output
    for name in ALL_TOOLCHAINS:
        assert name in result.stdout
    for series in ("23.11", "24.11", "25.11", "26.05"):
        assert series in result.stdout
    assert "24.11.5" in result.stdout


def test_list_says_how_each_toolchain_builds_arm64_from_an_amd64_host() -> None:
    from slurm_factory.catalog.toolchains import get_toolchain
    from slurm_factory.cli import _arm64_support

    assert _arm64_support(get_toolchain("trixie")) == "cross"
    assert _arm64_support(get_toolchain("rockylinux9")) == "emulated"
    amd64_only = get_toolchain("trixie").model_copy(update={"arches": {}})
    assert _arm64_support(amd64_only) == "no"


def test_list_shows_each_stored_artifact_with_version_engine_size_and_status(tmp_path: Path) -> None:
    builds = tmp_path / "sf-home" / "builds"
    stored_artifact(builds, "0123456789abcdef", data=b"x" * 2_500_000, built_at="2026-01-02T03:04:05+00:00")
    stored_artifact(builds, "fedcba9876543210", version="24.11.6", built_at="2026-01-03T03:04:05+00:00")
    (builds / "slurm-25.11-noble-software.tar.gz").symlink_to("by-id/gone/slurm-25.11-noble-software.tar.gz")

    # Wide enough that the table does not wrap the artifact name (not a terminal: Rich falls back to COLUMNS).
    result = _invoke("list", env={"COLUMNS": "250"})

    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if ARTIFACT_NAME in line]
    assert len(rows) == 2
    newest, older = rows
    assert "* " in newest and "fedcba9876543210" in newest and "24.11.6" in newest
    assert "0123456789abcdef" in older and "24.11.5" in older and "2.5 MB" in older and "native" in older
    assert "2026-01-02T03:04:05+00:00" in older


def test_list_json_is_valid_json_with_every_toolchain(tmp_path: Path) -> None:
    builds = tmp_path / "sf-home" / "builds"
    path = stored_artifact(builds, "0123456789abcdef")

    result = _invoke("list", "--json")

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [toolchain["name"] for toolchain in document["toolchains"]] == list(ALL_TOOLCHAINS)
    assert len(document["toolchains"]) == len(load_toolchains()) == 8
    assert "26.05.0" in {release["version"] for release in document["releases"]}
    [artifact] = document["artifacts"]
    assert artifact["path"] == str(path)
    assert artifact["slurm_version"] == "24.11.5"
    assert artifact["build_id"] == "0123456789abcdef"
    assert artifact["engine"] == "native"
    assert (artifact["verified"], artifact["signed"], artifact["current"]) == (False, False, True)


def test_clean_builds_keeps_the_newest_n_of_each_request(tmp_path: Path) -> None:
    builds = tmp_path / "sf-home" / "builds"
    old = stored_artifact(builds, "aaaa", built_at="2026-01-01T00:00:00+00:00")
    new = stored_artifact(builds, "bbbb", built_at="2026-01-02T00:00:00+00:00")

    result = _invoke("clean", "--builds", "--keep", "1")

    assert result.exit_code == 0, result.output
    assert not old.exists() and new.is_file()
    assert str(old.parent) in result.stdout


def test_clean_builds_with_keep_zero_is_a_usage_error(tmp_path: Path) -> None:
    builds = tmp_path / "sf-home" / "builds"
    only = stored_artifact(builds, "aaaa")

    result = _invoke("clean", "--builds", "--keep", "0")

    assert result.exit_code == EXIT_USAGE
    assert only.is_file()


def test_verify_of_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = _invoke("verify", str(tmp_path / "some.tar.gz"))

    assert result.exit_code == EXIT_USAGE
    errors = _error_lines(result)
    assert len(errors) == 1
    assert "some.tar.gz" in errors[0]
    assert "no such file" in errors[0]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"plain text, not a tarball", "not a readable gzip-compressed tarball"),
        (None, "no manifest.json"),
    ],
)
def test_verify_of_something_that_is_not_an_artifact_is_a_usage_error(
    tmp_path: Path, content: bytes | None, why: str
) -> None:
    target = tmp_path / "thing.tar.gz"
    if content is None:
        with tarfile.open(target, "w:gz") as archive:
            info = tarfile.TarInfo("just-a-dir/README")
            info.size = 2
            archive.addfile(info, io.BytesIO(b"hi"))
    else:
        target.write_bytes(content)
    result = _invoke("verify", str(target))

    assert result.exit_code == EXIT_USAGE
    errors = _error_lines(result)
    assert len(errors) == 1
    assert "is not a slurm-factory artifact" in errors[0]
    assert why in errors[0]


def test_build_compiler_dry_run_shows_image_environment_script_and_modulefile(tmp_path: Path) -> None:
    result = _invoke(
        "build-compiler", "--compiler-version", "13.4.0", "--toolchain", "rockylinux8", "--dry-run",
        "--plan-dir", str(tmp_path / "ctx"),
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert "GCC 13.4.0 for rockylinux8" in result.stdout
    assert "gcc-13.4.0-rockylinux8-compiler.tar.gz" in result.stdout
    assert '- "gcc@13.4.0 languages=c,c++,fortran +binutils"' in result.stdout
    assert "buildcache push --unsigned --update-index slurm-factory-local" in result.stdout
    written = {p.relative_to(tmp_path / "ctx").as_posix() for p in (tmp_path / "ctx").rglob("*") if p.is_file()}
    assert written == {
        "Dockerfile",
        "spack.yaml",
        "build-compiler.sh",
        "publish-compiler.sh",
        "artifact/modules/gcc/13.4.0.lua",
    }


def test_build_compiler_signed_push_plan_uses_the_key_on_the_tmpfs() -> None:
    result = _invoke(
        "build-compiler", "--compiler-version", "13.4.0", "--publish", "all", "--signing-key", "0x5EED1234ABCD5678",
        "--publish-url", "file:///srv/mirror", "--dry-run",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert 'spack -e "$ENV_DIR" gpg trust "$SECRETS/signing-key.asc"' in result.stdout
    assert 'buildcache push --key "$SLURM_FACTORY_SIGNING_KEY" --update-index slurm-factory-publish' in result.stdout
    assert "--unsigned" not in result.stdout


def test_build_slurm_with_a_compiler_missing_from_the_local_buildcache_names_the_command_that_makes_it(
    tmp_path: Path,
) -> None:
    result = _invoke(
        "build-slurm", "--toolchain", "rockylinux8", "--compiler-version", "10.5.0", "--use-local-buildcache",
        env={"SLURM_FACTORY_HOME": str(tmp_path), "DOCKER_HOST": "unix:///nonexistent.sock"},
    )  # fmt: skip

    assert result.exit_code == EXIT_USAGE, result.stderr
    errors = _error_lines(result)
    assert len(errors) == 1
    assert "GCC 10.5.0 for x86_64_v2 is not in the local buildcache" in errors[0]
    assert "slurm-factory build-compiler --compiler-version 10.5.0 --toolchain rockylinux8" in result.stderr


def test_build_compiler_with_an_unknown_version_lists_the_valid_versions() -> None:
    result = _invoke("build-compiler", "--compiler-version", "1.0")

    assert result.exit_code == EXIT_USAGE
    errors = _error_lines(result)
    assert len(errors) == 1
    assert "--compiler-version" in errors[0]
    assert "'1.0'" in errors[0]
    for version in load_gcc_catalog().versions:
        assert version in errors[0]


def test_build_compiler_without_compiler_version_is_a_usage_error() -> None:
    result = _invoke("build-compiler")

    assert result.exit_code == EXIT_USAGE
    assert "--compiler-version" in result.stderr


def test_no_command_shows_help_with_the_commands() -> None:
    result = _invoke()

    for command in ("build-slurm", "build-compiler", "clean", "list", "verify"):
        assert command in result.output


def test_s3_mirrors_dry_run_shows_the_endpoint_and_where_credentials_come_from(tmp_path: Path) -> None:
    result = _invoke(
        "build-slurm", "--toolchain", "trixie", "--buildcache", "deps", "--buildcache-url", "s3://cache/spack",
        "--publish", "all", "--signing-key", "0x5EED1234ABCD5678", "--publish-url", "s3://site/slurm",
        "--s3-endpoint-url", "http://127.0.0.1:9000", "--dry-run", "--plan-dir", str(tmp_path / "ctx"),
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    environment = yaml.safe_load((tmp_path / "ctx" / "spack.yaml").read_text())
    mirrors = environment["spack"]["mirrors:"]
    assert mirrors["slurm-factory-remote"]["url"] == "s3://cache/spack"
    assert mirrors["slurm-factory-publish"]["url"] == "s3://site/slurm"
    assert {m.get("endpoint_url") for m in mirrors.values() if m["url"].startswith("s3://")} == {
        "http://127.0.0.1:9000"
    }
    assert "# env      AWS_SHARED_CREDENTIALS_FILE=/run/slurm-factory-secrets/aws-credentials" in result.stdout
    assert "# run      bash /opt/slurm-factory/plan/publish-spack.sh" in result.stdout


def test_s3_endpoint_without_an_s3_mirror_is_a_usage_error() -> None:
    result = _invoke("build-slurm", "--toolchain", "trixie", "--s3-endpoint-url", "http://127.0.0.1:9000")

    assert result.exit_code == EXIT_USAGE
    [error] = _error_lines(result)
    assert "--s3-endpoint-url" in error and "s3://" in error


def test_a_reused_artifact_is_reported_as_reused(recorder: _BuildRecorder, tmp_path: Path) -> None:
    recorder.result.artifact = tmp_path / ARTIFACT_NAME
    recorder.result.stored = tmp_path / "by-id" / recorder.result.build_id / ARTIFACT_NAME
    recorder.result.sha256, recorder.result.size, recorder.result.reused = "0" * 64, 1, True

    text = _invoke("build-slurm", *NATIVE_TRIXIE)
    as_json = _invoke("build-slurm", *NATIVE_TRIXIE, "--json")

    assert text.exit_code == 0, text.output
    assert text.stdout.startswith("reused ")
    assert json.loads(as_json.stdout)["reused"] is True


# --- start-up: --help and completion load nothing heavy -------------------------------------------------------------

_HEAVY_MODULES = ("docker", "pydantic", "elftools", "jinja2", "yaml", "gnupg", "slurm_factory.builder")


@pytest.mark.parametrize("arguments", [["--help"], ["build-slurm", "--help"], ["verify", "--help"]])
def test_help_imports_none_of_the_heavy_modules(arguments: list[str]) -> None:
    probe = (
        "import sys\n"
        "from slurm_factory.cli import app\n"
        "try:\n"
        f"    app({arguments!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(m for m in {_HEAVY_MODULES!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "Usage: " in done.stdout


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("slurm-factory build-slurm --toolchain ro", ["rockylinux10", "rockylinux9", "rockylinux8"]),
        ("slurm-factory build-compiler --toolchain tri", ["trixie"]),
        ("slurm-factory build-slurm --slurm-version 24.11.", None),
    ],
)
def test_shell_completion_suggests_toolchains_and_releases(words: str, expected: list[str] | None) -> None:
    environment = {**os.environ, "_SLURM_FACTORY_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": "3"}
    program = "from slurm_factory.cli import app\napp(prog_name='slurm-factory')"
    done = subprocess.run([sys.executable, "-c", program], env=environment, capture_output=True, text=True)
    suggestions = done.stdout.split()
    if expected is not None:
        assert suggestions == expected
    else:
        releases = [release.version for release in load_releases() if release.version.startswith("24.11.")]
        assert sorted(suggestions) == sorted(set(releases))
