"""Check an untrusted artifact's manifest.json before anything uses it.

Verification reads a handful of manifest fields and some reach a Dockerfile (the base image, runtime packages) or
a path: each is checked for its type and, where it is interpolated, for its form, so a hostile manifest can neither
crash `verify` nor inject an instruction. A problem is one line naming the field (`ManifestError`).
"""

from __future__ import annotations

import json
import re
from typing import Any

from slurm_factory.artifact import MANIFEST_NAME

# Image references and package names as the toolchains' registries and package managers spell them: no whitespace,
# quotes or shell characters can pass.
_IMAGE_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$")
_PACKAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_:~-]{0,127}$")
_SERIES = re.compile(r"^[0-9]{2}\.[0-9]{2}$")
_VERSION = re.compile(r"^[0-9]{2}\.[0-9]{2}\.[0-9]{1,3}(-[0-9]+)?$")
_ABSOLUTE_PATH = re.compile(r"^/[A-Za-z0-9._/+-]{1,4095}$")
_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", bool: "true or false"}


class ManifestError(ValueError):
    """The manifest is missing a field, has one of the wrong type or form, or is not JSON at all."""


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _field(document: dict[str, Any], path: str, kind: type, *, required: bool = True) -> Any:
    """The value at dotted `path`, which must be of `kind` (absent and optional: None)."""
    value: Any = document
    walked: list[str] = []
    for key in path.split("."):
        if not isinstance(value, dict):
            raise ManifestError(f"{MANIFEST_NAME}: '{'.'.join(walked)}' must be an object, not {_type_name(value)}")
        walked.append(key)
        if key not in value:
            if required:
                raise ManifestError(f"{MANIFEST_NAME}: '{path}' is missing")
            return None
        value = value[key]
    if value is None and not required:
        return None
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ManifestError(f"{MANIFEST_NAME}: '{path}' must be {_TYPE_NAMES[kind]}, not {_type_name(value)}")
    return value


def _formed(path: str, value: str, form: re.Pattern[str], *, what: str) -> str:
    if not form.match(value):
        raise ManifestError(f"{MANIFEST_NAME}: '{path}' is not {what}: {value[:80]!r}")
    return value


def _strings(document: dict[str, Any], path: str, form: re.Pattern[str], *, what: str) -> None:
    for index, entry in enumerate(_field(document, path, list, required=False) or []):
        if not isinstance(entry, str):
            raise ManifestError(f"{MANIFEST_NAME}: '{path}[{index}]' must be a string, not {_type_name(entry)}")
        _formed(f"{path}[{index}]", entry, form, what=what)


def parse_manifest(data: bytes) -> dict[str, Any]:
    """The manifest as a dict whose fields verification uses are present and well-formed."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise ManifestError(f"{MANIFEST_NAME} is not JSON ({error})") from None
    if not isinstance(document, dict):
        raise ManifestError(f"{MANIFEST_NAME} must be a JSON object, not {_type_name(document)}")
    if _field(document, "tool.name", str) != "slurm-factory":
        raise ManifestError(f"{MANIFEST_NAME}: 'tool.name' is not slurm-factory: it was not written by slurm-factory")
    _field(document, "toolchain.name", str)
    _formed("toolchain.base_image", _field(document, "toolchain.base_image", str), _IMAGE_REFERENCE, what="an image")
    _formed("slurm.series", _field(document, "slurm.series", str), _SERIES, what="a Slurm series like 24.11")
    _formed("slurm.version", _field(document, "slurm.version", str), _VERSION, what="a Slurm release like 24.11.5")
    series, version = document["slurm"]["series"], document["slurm"]["version"]
    if not version.startswith(series + "."):
        raise ManifestError(f"{MANIFEST_NAME}: 'slurm.version' {version!r} is not of 'slurm.series' {series!r}")
    _formed("build_prefix", _field(document, "build_prefix", str), _ABSOLUTE_PATH, what="an absolute path")
    _strings(document, "build_paths", _ABSOLUTE_PATH, what="an absolute path")
    _strings(document, "runtime_packages", _PACKAGE_NAME, what="a package name")
    _field(document, "gpu", bool, required=False)
    arch = _field(document, "arch", str, required=False)
    if arch is not None and arch not in ("amd64", "arm64"):
        raise ManifestError(f"{MANIFEST_NAME}: 'arch' {arch[:20]!r} is not amd64 or arm64")
    _field(document, "spack_modules", str, required=False)
    return document
