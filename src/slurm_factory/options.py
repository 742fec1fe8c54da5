"""Every build option, declared once: its keyword, its flag, its help, its choices, its default.

`BuildOptions` (build-slurm) and `CompilerOptions` (build-compiler) are the declarations. From them come the command
line's options (`cli.py` generates each command's parameters), the keywords of `builder.build()` and
`build_compiler()` (typed by these TypedDicts, checked by `checked_options`), and the cells of `build-matrix` (an
option marked `axis` takes a list there; every other one applies to all cells). `request.make_request()` validates
what they carry against the catalog and each other.

Cheap to import (no pydantic, no catalog): `--help` and shell completion read it.
"""

import dataclasses
import difflib
import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, TypedDict, get_args, get_origin, get_type_hints

from slurm_factory.choices import (
    DEFAULT_SLURM_VERSION,
    DEFAULT_TOOLCHAIN,
    Arch,
    BuildcacheMode,
    Engine,
    OsPackagesMode,
    PackageKind,
    PublishMode,
)
from slurm_factory.completion import complete_gcc_version, complete_slurm_version, complete_toolchain
from slurm_factory.exceptions import ConfigurationError, quoted


@dataclass(frozen=True)
class Option:
    """How one option is spelled, explained and defaulted. The Python type is the declaration's annotation."""

    flag: str
    help: str
    default: Any = None
    choices: type[StrEnum] | None = None
    # A local file or directory: a str or os.PathLike in Python; a `Path` on the command line unless it may also be a
    # URL (a Path would fold `https://` into `https:/`).
    path: bool = False
    url: bool = False
    complete: Callable[[str], list[Any]] | None = None
    # What `--help` says the default is, when it is not a value (e.g. "the host's").
    default_text: str | None = None
    required: bool = False
    # build-matrix: one cell per value of a comma-separated list.
    axis: bool = False
    # Repeatable (`--patch A --patch B`): a list in Python, in the order given.
    multiple: bool = False
    # The section of `--help` and of the options reference it is listed under (one of GROUPS).
    group: str = "What to build"


# The sections of a build command's options, in the order `--help` and the reference list them.
GROUPS = ("What to build", "Engine and Spack inputs", "Verification", "Signing", "Publishing and mirrors", "Output")

# --- options several commands share (one declaration each) ---------------------------------------------------------

Toolchain = Annotated[
    str,
    Option(
        "--toolchain",
        "OS toolchain: see `slurm-factory list`.",
        default=DEFAULT_TOOLCHAIN,
        complete=complete_toolchain,
        axis=True,
    ),
]
NoCache = Annotated[
    bool,
    Option(
        "--no-cache",
        "Rebuild everything: no Docker layer cache, buildcache or ccache reuse.",
        default=False,
        group="Engine and Spack inputs",
    ),
]
Publish = Annotated[
    str | PublishMode,
    Option(
        "--publish",
        "What to publish: none, slurm, deps or all.",
        default="none",
        choices=PublishMode,
        group="Publishing and mirrors",
    ),
]
SigningKey = Annotated[
    str | None,
    Option(
        "--signing-key",
        "GPG key that signs what is published: its 64-bit long id (0x + 16 hex digits) or 40-digit fingerprint.",
        group="Signing",
    ),
]
GpgPrivateKey = Annotated[
    str | None,
    Option(
        "--gpg-private-key",
        "Base64 of the private key to import, or @path. Env: SLURM_FACTORY_GPG_PRIVATE_KEY.",
        default_text="",
        group="Signing",
    ),
]
GpgPassphrase = Annotated[
    str | None,
    Option(
        "--gpg-passphrase",
        "Passphrase of that key, or @path of a file holding it. Env: SLURM_FACTORY_GPG_PASSPHRASE.",
        default_text="",
        group="Signing",
    ),
]
TargetArch = Annotated[
    str | Arch | None,
    Option(
        "--arch",
        "The machine the artifact runs on: amd64 or arm64. From an x86_64 host, arm64 is cross-compiled where the OS "
        "has a cross toolchain (native engine on Debian and Ubuntu), else built in the arch's image under qemu "
        "emulation (always with Spack).",
        choices=Arch,
        default_text="the host's",
        axis=True,
    ),
]
PublishUrl = Annotated[
    str | None,
    Option(
        "--publish-url",
        "Where to publish: a file:// path or directory (default: the local binary mirror), s3://.",
        group="Publishing and mirrors",
    ),
]
S3EndpointUrl = Annotated[
    str | None,
    Option(
        "--s3-endpoint-url",
        "Endpoint of an S3-compatible store (MinIO, Ceph RGW) for s3:// mirrors. Env: AWS_ENDPOINT_URL_S3, "
        "AWS_ENDPOINT_URL. Credentials: AWS_PROFILE, ~/.aws/credentials or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY.",
        group="Publishing and mirrors",
    ),
]
SpackSource = Annotated[
    str | os.PathLike[str] | None,
    Option(
        "--spack-source",
        "Local Spack checkout, release tarball or URL instead of cloning Spack.",
        path=True,
        url=True,
        group="Engine and Spack inputs",
    ),
]
SpackPackagesSource = Annotated[
    str | os.PathLike[str] | None,
    Option(
        "--spack-packages-source",
        "Local spack-packages checkout, tarball or URL instead of fetching the pinned commit.",
        path=True,
        url=True,
        group="Engine and Spack inputs",
    ),
]
PythonWheels = Annotated[
    str | os.PathLike[str] | None,
    Option(
        "--python-wheels",
        "Directory of wheels (clingo, boto3 and their dependencies) for Spack's Python.",
        path=True,
        group="Engine and Spack inputs",
    ),
]
BaseImage = Annotated[str | None, Option("--base-image", "Override the toolchain's base image.")]


class BuildOptions(TypedDict, total=False):
    """`build-slurm`, `builder.build()` and every cell of `build-matrix`."""

    slurm_version: Annotated[
        str,
        Option(
            "--slurm-version",
            "Series (newest patch) or exact release, e.g. 25.11 or 24.11.5.",
            default=DEFAULT_SLURM_VERSION,
            complete=complete_slurm_version,
            axis=True,
        ),
    ]
    toolchain: Toolchain
    gpu: Annotated[bool, Option("--gpu", "Build the NVML and RSMI GPU plugins.", default=False, axis=True)]
    package: Annotated[
        str | PackageKind,
        Option(
            "--package",
            "What to produce: tarball (the relocatable tree), deb or rpm (the OS's native packages, installed in /usr "
            "and /etc/slurm; native engine, deb on apt toolchains, rpm on dnf ones, where only its plan is rendered "
            "yet: --dry-run, with --plan-dir to write it) or all (the tarball and the toolchain's native format, "
            "from one request).",
            default="tarball",
            choices=PackageKind,
        ),
    ]
    package_release: Annotated[
        str | None,
        Option(
            "--package-release",
            "With --package deb|rpm|all: the packages' release number (the N of 24.11.5-N+sf.<codename> or "
            "24.11.5-N.sf.el<major>); bump it to rebuild the same Slurm release so that apt or dnf upgrades to it.",
            default_text="1",
        ),
    ]
    package_maintainer: Annotated[
        str | None,
        Option(
            "--package-maintainer",
            "With --package deb|rpm|all: who the packages name as their maintainer (debian/control's Maintainer, the "
            "rpm Packager, both changelogs), as 'Name <email>', e.g. 'HPC Team <hpc@example.org>'.",
            default_text="slurm-factory <slurm-factory@localhost>",
        ),
    ]
    verify: Annotated[
        bool, Option("--verify", "Verify relocatability and function.", default=False, group="Verification")
    ]
    upgrade_from: Annotated[
        str | os.PathLike[str] | None,
        Option(
            "--upgrade-from",
            "With --verify: an older release's artifact of this toolchain; verification runs it first and upgrades "
            "the cluster in place to the new build (only upgrades Slurm supports; refused before anything builds).",
            path=True,
            group="Verification",
        ),
    ]
    no_cache: NoCache
    buildcache: Annotated[
        str | BuildcacheMode,
        Option(
            "--buildcache",
            "Install from the binary buildcache: none, deps or all.",
            default="none",
            choices=BuildcacheMode,
            group="Engine and Spack inputs",
        ),
    ]
    publish: Publish
    enable_hierarchy: Annotated[
        bool,
        Option(
            "--enable-hierarchy",
            "Lmod Core/Compiler/MPI hierarchy instead of a flat tree.",
            default=False,
            group="Engine and Spack inputs",
        ),
    ]
    signing_key: SigningKey
    gpg_private_key: GpgPrivateKey
    gpg_passphrase: GpgPassphrase
    use_local_buildcache: Annotated[
        bool,
        Option(
            "--use-local-buildcache",
            "Also use <home>/spack-buildcache (default ~/.slurm-factory) as a mirror.",
            default=False,
            group="Engine and Spack inputs",
        ),
    ]
    compiler_version: Annotated[
        str | None,
        Option(
            "--compiler-version",
            "Build with a GCC from `build-compiler` (e.g. 10.5.0).",
            complete=complete_gcc_version,
            group="Engine and Spack inputs",
        ),
    ]
    engine: Annotated[
        str | Engine,
        Option("--engine", "spack (whole stack) or native (OS libraries).", default="spack", choices=Engine),
    ]
    arch: TargetArch
    emulate: Annotated[
        bool,
        Option(
            "--emulate",
            "With --arch of another machine: build inside that arch's image under qemu emulation instead of with "
            "the OS's cross compiler (slower; toolchains without a cross toolchain always build that way).",
            default=False,
        ),
    ]
    slurm_source: Annotated[
        str | os.PathLike[str] | None,
        Option("--slurm-source", "Local path or URL of the Slurm source tarball.", path=True, url=True),
    ]
    spack_source: SpackSource
    spack_packages_source: SpackPackagesSource
    python_wheels: PythonWheels
    base_image: BaseImage
    buildcache_url: Annotated[
        str | None,
        Option("--buildcache-url", "Binary mirror to read: file://, s3://, https://.", group="Engine and Spack inputs"),
    ]
    publish_url: PublishUrl
    s3_endpoint_url: S3EndpointUrl
    os_packages: Annotated[
        str | OsPackagesMode | None,
        Option(
            "--os-packages",
            "Spack engine: what the toolchain OS supplies. build: build-only tools (every linked library built "
            "by Spack); all: every dependency the OS packages (the artifact needs the runtime packages its manifest "
            "lists); none: only the compiler.",
            choices=OsPackagesMode,
            default_text="build",
            group="Engine and Spack inputs",
        ),
    ]
    patches: Annotated[
        list[str | os.PathLike[str]] | None,
        Option(
            "--patch",
            "A patch to Slurm's source (patch -p1), applied after the source's sha256 is checked; repeat for several, "
            "applied in order. Each one's sha256 goes into the manifest, the SBOM and the build id.",
            path=True,
            multiple=True,
        ),
    ]
    releases_file: Annotated[
        str | os.PathLike[str] | None,
        Option(
            "--releases-file",
            "A site's Slurm releases (tag, sha256, date; tab-separated, as `list --json` shows the catalog's) merged "
            "over the shipped catalog.",
            path=True,
            default_text="<home>/releases.tsv when it exists",
        ),
    ]
    spack_packages: Annotated[
        str | os.PathLike[str] | None,
        Option(
            "--spack-packages",
            "Spack engine: a site packages.yaml (its MPI, UCX, libfabric as externals; preferred versions and "
            "variants) merged over the generated one.",
            path=True,
            group="Engine and Spack inputs",
        ),
    ]


class CompilerOptions(TypedDict, total=False):
    """`build-compiler` and `builder.build_compiler()`."""

    compiler_version: Annotated[
        str,
        Option(
            "--compiler-version",
            "GCC release to build, e.g. 13.4.0.",
            required=True,
            complete=complete_gcc_version,
            group="What to build",
        ),
    ]
    toolchain: Toolchain
    arch: TargetArch
    no_cache: NoCache
    publish: Publish
    signing_key: SigningKey
    gpg_private_key: GpgPrivateKey
    gpg_passphrase: GpgPassphrase
    publish_url: PublishUrl
    s3_endpoint_url: S3EndpointUrl
    spack_source: SpackSource
    spack_packages_source: SpackPackagesSource
    python_wheels: PythonWheels
    base_image: BaseImage


@dataclass(frozen=True)
class Declared:
    """One declared option: its keyword, how it is spelled, and whether it is a flag."""

    name: str
    option: Option
    is_flag: bool

    @property
    def default(self) -> Any:
        return self.option.default


@functools.cache
def declared(options: type) -> tuple[Declared, ...]:
    """The options of a declaration (`BuildOptions`, `CompilerOptions`), in declaration order."""
    result = []
    for name, hint in get_type_hints(options, include_extras=True).items():
        if get_origin(hint) is not Annotated:
            raise TypeError(f"{options.__name__}.{name} has no Option")
        python_type, option = get_args(hint)[:2]
        result.append(Declared(name, option, python_type is bool))
    return tuple(result)


def declared_by_name(options: type) -> dict[str, Declared]:
    return {item.name: item for item in declared(options)}


def checked_options(options: type, given: Mapping[str, Any], caller: str) -> dict[str, Any]:
    """What a Python caller passed, checked against the declaration (unknown keywords, types) and completed with the
    defaults. A path may be a `Path`; a flag must be a bool; a choice a string or its enum; everything else a string
    (`slurm_version=24.11`, a float, cannot tell 24.1 from 24.10 and is refused rather than guessed)."""
    known = declared_by_name(options)
    for name in given:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            raise ConfigurationError(
                f"{caller} has no option {name!r}",
                hint=f"did you mean {close[0]}?" if close else f"its options: {', '.join(known)}",
            )
    return {name: _checked_value(item, given.get(name, item.default)) for name, item in known.items()}


def _checked_value(item: Declared, value: Any) -> Any:
    name = item.name
    if value is None and item.option.required:
        raise ConfigurationError(f"{name}=None: a {name.replace('_', ' ')} is required")
    if value is None:
        return None
    if item.option.multiple:
        if isinstance(value, str | bytes | os.PathLike) or not isinstance(value, list | tuple):
            raise ConfigurationError(
                f"{name}={quoted(value)}: expected a list, not {type(value).__name__}",
                hint=f"write it as {name}=[{str(value)!r}]" if isinstance(value, str | os.PathLike) else None,
            )
        single = Declared(item.name, dataclasses.replace(item.option, multiple=False, required=True), item.is_flag)
        return [_checked_value(single, element) for element in value] or None
    if item.option.path and isinstance(value, os.PathLike):
        return os.fspath(value)
    expected: type = bool if item.is_flag else str  # a StrEnum member is a str
    if not isinstance(value, expected):
        raise ConfigurationError(
            f"{name}={quoted(value)}: expected {'True or False' if expected is bool else 'a string'}, "
            f"not {type(value).__name__}",
            hint=f"write it as {name}={str(value)!r}" if expected is str and isinstance(value, int | float) else None,
        )
    return value
