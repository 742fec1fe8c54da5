"""How every Slurm build is configured (`data/build.yaml`): release and hardening flags, contribs, our own patches."""

from __future__ import annotations

from functools import cache

import yaml
from pydantic import BaseModel, ConfigDict, Field

from slurm_factory.catalog._data import read_data_text

BUILD_FILE = "build.yaml"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Release(_Frozen):
    configure: tuple[str, ...]
    cflags: tuple[str, ...]
    ldflags: tuple[str, ...]


class _ArchHardening(_Frozen):
    cflags: tuple[str, ...]
    min_gcc: int


class _Hardening(_Frozen):
    cppflags: tuple[str, ...]
    cflags: tuple[str, ...]
    ldflags: tuple[str, ...]
    arch: dict[str, _ArchHardening] = Field(default_factory=dict)


class OwnPatch(_Frozen):
    """A patch slurm-factory applies to every build (a file in `templates/patches/`) and why."""

    name: str
    why: str


class BuildCatalog(_Frozen):
    release: _Release
    hardening: _Hardening
    not_used: dict[str, str]
    contribs: tuple[str, ...]
    contrib_scripts: tuple[str, ...]
    not_installed_contribs: dict[str, str]
    patches: tuple[OwnPatch, ...]


@cache
def load_build_catalog() -> BuildCatalog:
    return BuildCatalog.model_validate(yaml.safe_load(read_data_text(BUILD_FILE)))


class CompilerFlags(_Frozen):
    """The flags of one build: what the compiler, preprocessor and linker get, and configure's release options."""

    configure: tuple[str, ...]
    cppflags: tuple[str, ...]
    cflags: tuple[str, ...]
    ldflags: tuple[str, ...]

    def to_json(self) -> dict[str, list[str]]:
        return {
            "configure": list(self.configure),
            "CPPFLAGS": list(self.cppflags),
            "CFLAGS": list(self.cflags),
            "LDFLAGS": list(self.ldflags),
        }


def release_flags(arch: str, gcc_major: int) -> CompilerFlags:
    """A release build's flags for `arch` with a GCC of `gcc_major`: the arch's control-flow protection only where
    that GCC has it."""
    catalog = load_build_catalog()
    hardening = catalog.hardening
    arch_hardening = hardening.arch.get(arch)
    arch_cflags = arch_hardening.cflags if arch_hardening and gcc_major >= arch_hardening.min_gcc else ()
    return CompilerFlags(
        configure=catalog.release.configure,
        cppflags=hardening.cppflags,
        cflags=(*catalog.release.cflags, *hardening.cflags, *arch_cflags),
        ldflags=(*catalog.release.ldflags, *hardening.ldflags),
    )
