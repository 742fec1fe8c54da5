"""The documentation cannot drift from the code: the generated reference pages are what the code renders now, and
every `slurm-factory` command in an `sh` block of the README and the docs runs (builds with `--dry-run`).
`console` and `text` blocks are shown, not run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slurm_factory import cli
from slurm_factory.reference import PAGES

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"
PLANNED = ("build-slurm", "build", "build-compiler", "build-matrix")
_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("name", sorted(PAGES))
def test_the_generated_reference_page_is_current(name: str) -> None:
    page = DOCS / "reference" / name
    assert page.read_text(encoding="utf-8") == PAGES[name](), (
        f"{page} is stale: run `python -m slurm_factory.reference docs/reference`"
    )


def _commands() -> list[tuple[str, str]]:
    found = []
    for path in [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]:
        for block in _BLOCK.findall(path.read_text(encoding="utf-8")):
            for line in block.replace("\\\n", " ").splitlines():
                command = line.split(" # ", 1)[0].strip()
                if command.startswith("slurm-factory "):
                    found.append((str(path.relative_to(ROOT)), command))
    return found


COMMANDS = _commands()


def test_the_docs_have_commands_to_run() -> None:
    files = {path for path, _ in COMMANDS}
    assert len(COMMANDS) >= 12
    assert {"README.md", "docs/getting-started.md", "docs/engines.md"} <= files


@pytest.mark.parametrize(("source", "command"), COMMANDS, ids=[f"{p}:{c[:60]}" for p, c in COMMANDS])
def test_a_documented_command_runs(source: str, command: str, tmp_path: Path) -> None:
    arguments = shlex.split(command)[1:]
    if arguments[0] in PLANNED and "--dry-run" not in arguments and "--help" not in arguments:
        arguments.append("--dry-run")
    environment = {"SLURM_FACTORY_HOME": str(tmp_path / "home"), "IF_PROJECT_NAME": "sf-docs"}

    result = CliRunner().invoke(cli.app, arguments, env=environment)

    assert result.exit_code == 0, f"{source}: {command}\n{result.output[-2000:]}"
