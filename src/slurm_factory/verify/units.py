"""The systemd units an artifact ships, read the way systemd reads them, so verification starts each daemon with
exactly the command line, user, environment and runtime directory the unit gives (not a private copy of them).

Only what the daemons' units use is understood: `Environment=`, `EnvironmentFile=` (`-` for optional, later
files and assignments win), `User=`, `Group=`, `RuntimeDirectory=` with its mode, `Type=` and one `ExecStart=`,
whose `$VAR` (split into words) and `${VAR}` (one word) are expanded as systemd.service(5) describes.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

_SIMPLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_BRACED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class UnitError(ValueError):
    """A unit verification cannot start as written."""


@dataclass(frozen=True)
class ServiceCommand:
    """How systemd would start a unit's service."""

    unit: str
    argv: tuple[str, ...]
    user: str | None
    group: str | None
    environment: dict[str, str]
    runtime_directories: tuple[str, ...] = ()
    runtime_directory_mode: str = "0755"
    service_type: str = "simple"
    environment_files: tuple[tuple[str, bool], ...] = field(default_factory=tuple)


def _service_lines(text: str) -> list[tuple[str, str]]:
    """`(key, value)` of the `[Service]` section, in order (comments, blank lines and other sections skipped;
    backslash continuations joined)."""
    entries = []
    section = ""
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section == "Service" and "=" in line:
            key, _, value = line.partition("=")
            entries.append((key.strip(), value.strip()))
    return entries


def parse_environment_assignments(value: str) -> dict[str, str]:
    """`Environment=A=1 "B=two words"`: whitespace-separated assignments, each optionally quoted."""
    assignments = {}
    for word in shlex.split(value):
        name, equals, setting = word.partition("=")
        if equals and name:
            assignments[name] = setting
    return assignments


def parse_environment_file(text: str) -> dict[str, str]:
    """An EnvironmentFile: `NAME=value` lines, `#`/`;` comments, values optionally quoted (shell-like)."""
    assignments = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        name, equals, setting = line.partition("=")
        if not equals:
            continue
        words = shlex.split(setting, comments=False) if setting.strip() else [""]
        assignments[name.strip().removeprefix("export ").strip()] = " ".join(words)
    return assignments


def expand_exec(line: str, environment: dict[str, str]) -> tuple[str, ...]:
    """ExecStart's words with `${VAR}` replaced inside its word and `$VAR` alone in a word split on whitespace; an
    unset variable is empty (a lone `$VAR` then disappears)."""
    command = line.lstrip("@-:+!")
    words: list[str] = []
    for word in shlex.split(command):
        alone = _SIMPLE.fullmatch(word)
        if alone:
            words.extend(environment.get(alone[1], "").split())
            continue
        word = _BRACED.sub(lambda match: environment.get(match[1], ""), word)
        words.append(_SIMPLE.sub(lambda match: environment.get(match[1], ""), word))
    return tuple(words)


def parse_unit(name: str, text: str, read_file: Callable[[str], str | None]) -> ServiceCommand:
    """The service of unit `name` (its text), reading each EnvironmentFile through `read_file` (None: missing)."""
    environment: dict[str, str] = {}
    files: list[tuple[str, bool]] = []
    settings: dict[str, str] = {}
    exec_start = None
    for key, value in _service_lines(text):
        if key == "Environment":
            environment.update(parse_environment_assignments(value))
        elif key == "EnvironmentFile":
            optional = value.startswith("-")
            files.append((value.removeprefix("-"), optional))
        elif key == "ExecStart":
            if exec_start is not None and value:
                raise UnitError(f"{name}: more than one ExecStart= for a service that is not Type=oneshot")
            exec_start = value
        else:
            settings[key] = value
    # systemd reads the files after the assignments: what a file sets wins.
    for path, optional in files:
        content = read_file(path)
        if content is None:
            if optional:
                continue
            raise UnitError(f"{name}: EnvironmentFile={path} does not exist")
        environment.update(parse_environment_file(content))
    if not exec_start:
        raise UnitError(f"{name}: no ExecStart=")
    argv = expand_exec(exec_start, environment)
    if not argv:
        raise UnitError(f"{name}: ExecStart= is empty once expanded")
    return ServiceCommand(
        unit=name,
        argv=argv,
        user=settings.get("User") or None,
        group=settings.get("Group") or None,
        environment=environment,
        runtime_directories=tuple(settings.get("RuntimeDirectory", "").split()),
        runtime_directory_mode=settings.get("RuntimeDirectoryMode", "0755"),
        service_type=settings.get("Type", "simple"),
        environment_files=tuple(files),
    )
