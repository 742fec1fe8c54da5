"""The bad-input table (bad_inputs.yaml): each case through the real CLI, in a scratch directory, under strace.

Asserted per case: the exit code, the first line on stderr, no traceback, no Docker engine needed (DOCKER_HOST names a
socket that does not exist), and no file created, written, renamed or removed outside the scratch directory.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import slurm_source_tarball

TABLE = Path(__file__).with_name("bad_inputs.yaml")
# Syscalls that change the file system; `-y` makes strace print the path behind every descriptor argument.
WRITING_SYSCALLS = (
    "open,openat,creat,mkdir,mkdirat,rename,renameat,renameat2,unlink,unlinkat,rmdir,link,linkat,symlink,symlinkat,"
    "truncate,chmod,fchmodat,chown,fchownat,utimensat"
)
_WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC")
_ALLOWED_OUTSIDE = ("/dev/null", "/dev/tty", "/dev/pts/")
_CALL = re.compile(r"^\d+\s+(?P<name>\w+)\((?P<arguments>.*)\)\s+=\s+\d+")
_DIRECTORY_ARGUMENT = re.compile(r"^(?:AT_FDCWD|\d+<(?P<path>[^>]*)>)$")


@dataclass(frozen=True)
class Case:
    id: str
    argv: list[str]
    exit: int
    first_line: str
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)


def _load_cases() -> list[Case]:
    loaded: list[dict[str, Any]] = yaml.safe_load(TABLE.read_text(encoding="utf-8"))
    return [Case(**entry) for entry in loaded]


CASES = _load_cases()


def _fill(text: str, scratch: Path) -> str:
    values = {"scratch": str(scratch), "long": "a" * 5000}
    if "{source}" in text:
        values["source"] = str(slurm_source_tarball())
    return text.format(**values)


def _split_arguments(arguments: str) -> list[str]:
    """strace's argument list, split at top-level commas (strings, brackets and braces kept whole)."""
    parts, depth, quoted, current = [], 0, False, []
    previous = ""
    for character in arguments:
        if character == '"' and previous != "\\":
            quoted = not quoted
        elif not quoted and character in "[{(":
            depth += 1
        elif not quoted and character in "]})":
            depth -= 1
        if character == "," and depth == 0 and not quoted:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(character)
        previous = character
    parts.append("".join(current).strip())
    return parts


def _path(argument: str, directory: str | None, cwd: Path) -> Path:
    text = argument.strip('"').encode().decode("unicode_escape")
    path = Path(text)
    if path.is_absolute():
        return path
    return Path(directory) / path if directory else cwd / path


def written_paths(trace: str, cwd: Path) -> list[Path]:
    """Every path a successful call in the trace created, wrote, renamed, removed or changed."""
    paths = []
    for line in trace.splitlines():
        match = _CALL.match(line)
        if match is None:
            continue
        name, arguments = match["name"], _split_arguments(match["arguments"])
        if name in ("open", "openat") and not any(flag in line for flag in _WRITE_FLAGS):
            continue
        directory = None
        for argument in arguments:
            at = _DIRECTORY_ARGUMENT.match(argument)
            if at is not None:
                directory = at["path"]
            elif argument.startswith('"'):
                paths.append(_path(argument, directory, cwd))
    return paths


def _outside(path: Path, scratch: Path) -> bool:
    resolved = Path(os.path.normpath(path))
    return not resolved.is_relative_to(scratch) and not str(resolved).startswith(_ALLOWED_OUTSIDE)


def _environment(case: Case, scratch: Path) -> dict[str, str]:
    keep = {name: os.environ[name] for name in ("PATH", "LANG", "LC_ALL", "VIRTUAL_ENV") if name in os.environ}
    base = {
        **keep,
        "HOME": str(scratch / "home"),
        "SLURM_FACTORY_HOME": str(scratch / "sf-home"),
        "TMPDIR": str(scratch / "tmp"),
        "GNUPGHOME": str(scratch / "gnupg"),
        "DOCKER_HOST": f"unix://{scratch}/no-docker-engine.sock",
        "AWS_SHARED_CREDENTIALS_FILE": str(scratch / "no-aws" / "credentials"),
        "AWS_CONFIG_FILE": str(scratch / "no-aws" / "config"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYTHONDONTWRITEBYTECODE": "1",
        "COLUMNS": "200",
    }
    return {**base, **{name: _fill(value, scratch) for name, value in case.env.items()}}


def _prepare(case: Case, scratch: Path) -> None:
    for directory in ("home", "tmp"):
        (scratch / directory).mkdir()
    for relative, text in case.files.items():
        target = scratch / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    for relative, target_name in case.symlinks.items():
        (scratch / relative).symlink_to(target_name)


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed (scripts/testenv up installs it)")
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_refused_early_with_one_line_and_writes_nothing_outside_the_scratch(
    case: Case, tmp_path: Path
) -> None:
    scratch = tmp_path.resolve()
    _prepare(case, scratch)
    argv = [_fill(argument, scratch) for argument in case.argv]
    trace = scratch / "strace.log"
    command = ["strace", "-f", "-qq", "-y", "-e", f"trace={WRITING_SYSCALLS}", "-e", "status=successful"]
    command += ["-o", str(trace), sys.executable, "-m", "slurm_factory", *argv]

    done = subprocess.run(
        command, cwd=scratch, env=_environment(case, scratch), capture_output=True, text=True, timeout=120
    )

    stderr_lines = done.stderr.splitlines()
    assert done.returncode == case.exit, done.stderr
    assert stderr_lines, "nothing on stderr"
    assert re.search(case.first_line, stderr_lines[0]), stderr_lines[0]
    assert "Traceback" not in done.stderr
    assert len(stderr_lines[0]) < 400, "an error line echoes input unshortened"
    outside = [str(path) for path in written_paths(trace.read_text(), scratch) if _outside(path, scratch)]
    assert outside == []


def test_the_trace_parser_finds_writes_and_ignores_reads(tmp_path: Path) -> None:
    trace = (
        '12 openat(AT_FDCWD</x>, "/etc/passwd", O_RDONLY|O_CLOEXEC) = 3</etc/passwd>\n'
        '12 openat(AT_FDCWD</x>, "/etc/evil", O_WRONLY|O_CREAT|O_TRUNC, 0644) = 3</etc/evil>\n'
        '12 mkdir("relative", 0777) = 0\n'
        '13 renameat2(4</srv/dir>, "a", AT_FDCWD</x>, "/tmp/b", RENAME_NOREPLACE) = 0\n'
        '13 unlinkat(5</var/tmp>, "gone", 0) = 0\n'
    )
    assert written_paths(trace, tmp_path) == [
        Path("/etc/evil"),
        tmp_path / "relative",
        Path("/srv/dir/a"),
        Path("/tmp/b"),
        Path("/var/tmp/gone"),
    ]
