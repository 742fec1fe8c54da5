"""A site's own Spack `packages.yaml` (`--spack-packages FILE`): its MPI, UCX, libfabric or Lustre as externals,
preferred versions and variants, merged over what slurm-factory generates.

The file is read and checked when the request is made, so a typo fails before any container starts, with the file
and the line. The merge is per package and per key: the site's value of a key replaces ours; a package the site
gives its own `externals` or makes `buildable` is not taken from the toolchain OS (`--os-packages`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from slurm_factory.exceptions import ConfigurationError

OPTION = "--spack-packages"
MAX_SIZE = 1_000_000
# The keys Spack accepts for one package in packages.yaml (Spack 1.x schema); anything else is a typo.
PACKAGE_KEYS = frozenset(
    {
        "buildable",
        "externals",
        "version",
        "variants",
        "require",
        "prefer",
        "conflict",
        "target",
        "compiler",
        "providers",
        "permissions",
        "package_attributes",
    }
)


def _fail(path: Path, problem: str) -> ConfigurationError:
    return ConfigurationError(
        f"{OPTION} {path}: {problem}",
        hint="the file is a Spack packages.yaml: `packages:` mapping each package name to its settings",
    )


def _read(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_SIZE:
            raise _fail(path, f"{size} bytes; a packages.yaml is at most {MAX_SIZE} bytes")
        return path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise _fail(path, "is a directory, not a file") from None
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except UnicodeDecodeError:
        raise _fail(path, "is not UTF-8 text") from None
    except OSError as error:
        raise _fail(path, f"cannot read it: {error.strerror}") from None


def _parse(path: Path, text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise _fail(path, f"not valid YAML ({where}{error.problem})") from None
    except yaml.YAMLError as error:
        raise _fail(path, f"not valid YAML ({error})") from None


def _check_external(path: Path, name: str, index: int, *, external: Any) -> None:
    where = f"packages:{name}:externals[{index}]"
    if not isinstance(external, dict):
        raise _fail(path, f"{where} must be a mapping with `spec` and `prefix`")
    if not isinstance(external.get("spec"), str) or not external["spec"].strip():
        raise _fail(path, f"{where} has no `spec` string")
    if not isinstance(external.get("prefix"), str) and not isinstance(external.get("modules"), list):
        raise _fail(path, f"{where} ({external['spec']}) needs a `prefix` (or `modules`)")


def _check_package(path: Path, name: str, entry: Any) -> None:
    if not isinstance(entry, dict):
        raise _fail(path, f"packages:{name} must be a mapping, not {type(entry).__name__}")
    unknown = sorted(str(key) for key in entry if key not in PACKAGE_KEYS)
    if unknown:
        raise _fail(
            path, f"packages:{name} has unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(PACKAGE_KEYS))}"
        )
    if "buildable" in entry and not isinstance(entry["buildable"], bool):
        raise _fail(path, f"packages:{name}:buildable must be true or false")
    externals = entry.get("externals", [])
    if not isinstance(externals, list):
        raise _fail(path, f"packages:{name}:externals must be a list")
    for index, external in enumerate(externals):
        _check_external(path, name, index, external=external)


def load_site_packages(value: str) -> tuple[str, dict[str, Any]]:
    """The file's absolute path and its `packages:` mapping, checked; or a ConfigurationError naming the file."""
    path = Path(value).expanduser().resolve()
    document = _parse(path, _read(path))
    if not isinstance(document, dict) or set(document) != {"packages"}:
        if isinstance(document, dict) and "packages:" in document:
            raise _fail(
                path, "`packages::` would replace the generated settings (the compiler among them); use `packages:`"
            )
        raise _fail(path, "the top level must be exactly one key, `packages:`")
    packages = document["packages"]
    if not isinstance(packages, dict) or not packages:
        raise _fail(path, "`packages:` must map at least one package name to its settings")
    for name, entry in packages.items():
        _check_package(path, str(name), entry)
    return str(path), {str(name): entry for name, entry in packages.items()}


def overrides_os(entry: dict[str, Any]) -> bool:
    """The site decides where this package comes from: its own externals, or Spack builds it."""
    return "externals" in entry or "buildable" in entry
