"""One declaration per option (`slurm_factory.options`) drives the command line, the Python API and the matrix."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import typer

from slurm_factory import cli
from slurm_factory.builder import build, build_compiler
from slurm_factory.config import Settings
from slurm_factory.exceptions import EXIT_USAGE, ConfigurationError
from slurm_factory.options import BuildOptions, CompilerOptions, checked_options, declared
from tests.unit.test_cli import DEFAULT_KWARGS

# The contract's Python API example (docs/python-api.md), keyword for keyword (`settings` aside), with the
# CLI's defaults.
CONTRACT_KEYWORDS = {
    name: DEFAULT_KWARGS[name]
    for name in (
        "slurm_version",
        "toolchain",
        "gpu",
        "verify",
        "no_cache",
        "buildcache",
        "publish",
        "enable_hierarchy",
        "signing_key",
        "gpg_private_key",
        "gpg_passphrase",
        "compiler_version",
        "use_local_buildcache",
    )
} | {"slurm_version": "24.11.5", "toolchain": "trixie"}


def _click_flags(command: str) -> list[str]:
    """The command's options as click parses them (typer may bring its own copy of click: duck-typed)."""
    group = typer.main.get_command(cli.app)
    sub = group.commands[command]  # type: ignore[attr-defined]
    return [flag for parameter in sub.params if parameter.param_type_name == "option" for flag in parameter.opts]


@pytest.mark.parametrize(
    ("command", "declaration"), [("build-slurm", BuildOptions), ("build-compiler", CompilerOptions)]
)
def test_each_command_offers_exactly_its_declared_options_then_the_run_options(command: str, declaration: type) -> None:
    flags = _click_flags(command)
    assert flags == [
        *(item.option.flag for item in declared(declaration)),
        "--gpg-passphrase-file",
        "--dry-run",
        "--plan-dir",
        "--json",
    ]


def test_the_python_api_takes_the_contract_keywords(settings: Settings) -> None:
    result = build(**CONTRACT_KEYWORDS, engine="native", settings=settings, dry_run=True)  # type: ignore[arg-type]
    assert result.plan.request.slurm.version == "24.11.5"
    assert result.artifact is None


def test_an_unknown_keyword_is_refused_with_the_closest_option(settings: Settings) -> None:
    with pytest.raises(ConfigurationError) as raised:
        build(slurm_version="24.11.5", toolchain="trixie", gpus=True, settings=settings, dry_run=True)  # type: ignore[call-arg]
    assert raised.value.exit_code == EXIT_USAGE
    assert "build() has no option 'gpus'" in raised.value.message
    assert raised.value.hint == "did you mean gpu?"


def test_build_compiler_refuses_an_option_of_build_slurm(settings: Settings) -> None:
    with pytest.raises(ConfigurationError, match=r"build_compiler\(\) has no option 'gpu'"):
        build_compiler(compiler_version="13.4.0", gpu=True, settings=settings, dry_run=True)  # type: ignore[call-arg]


def test_defaults_come_from_the_declaration() -> None:
    values = checked_options(BuildOptions, {}, "build()")
    assert values["slurm_version"] == "25.11"
    assert values["toolchain"] == "noble"
    assert values["engine"] == "spack"
    assert values["gpu"] is False
    assert values["arch"] is None


def test_a_path_option_takes_a_path_object_and_hands_on_a_string(tmp_path: Path) -> None:
    values = checked_options(BuildOptions, {"spack_packages": tmp_path / "packages.yaml"}, "build()")
    assert values["spack_packages"] == str(tmp_path / "packages.yaml")


def test_a_required_option_has_no_default_on_the_command_line() -> None:
    signature = inspect.signature(cli.build_compiler_command)
    assert signature.parameters["compiler_version"].default is inspect.Parameter.empty
    assert signature.parameters["toolchain"].default == "noble"


def test_the_matrix_axes_are_the_options_that_name_an_artifact() -> None:
    axes = [item.name for item in declared(BuildOptions) if item.option.axis]
    assert axes == ["slurm_version", "toolchain", "gpu", "arch"]
