"""BuildRequest: everything the user asked for, validated at once, before Docker is touched.

`make_request()` takes raw option values (as the CLI and `builder.build()` receive them), checks each against the
catalog and against the others, and returns a frozen `BuildRequest`. Every failure is a `ConfigurationError` whose
message names the option and, where there is a fixed set, lists the valid values.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar, Unpack
from urllib.parse import ParseResult, unquote, urlparse

from pydantic import BaseModel, ConfigDict, SecretBytes, SecretStr

from slurm_factory.catalog import SlurmRelease, Toolchain, resolve_release
from slurm_factory.catalog.compilers import check_gcc_version
from slurm_factory.catalog.releases import load_site_releases
from slurm_factory.catalog.toolchains import get_toolchain

# Re-exported: the request's vocabulary; it lives in `choices` so that the CLI imports it cheaply.
from slurm_factory.choices import DEFAULT_SLURM_VERSION as DEFAULT_SLURM_VERSION
from slurm_factory.choices import LINUX_MACHINES, arch_suffix, host_arch
from slurm_factory.choices import Arch as Arch
from slurm_factory.choices import BuildcacheMode as BuildcacheMode
from slurm_factory.choices import Engine as Engine
from slurm_factory.choices import OsPackagesMode as OsPackagesMode
from slurm_factory.choices import PackageKind as PackageKind
from slurm_factory.choices import PublishMode as PublishMode
from slurm_factory.engines import engine_for
from slurm_factory.exceptions import ConfigurationError, quoted
from slurm_factory.options import BuildOptions, CompilerOptions, checked_options
from slurm_factory.packages.versions import DEFAULT_RELEASE, check_package_release
from slurm_factory.patches import SourcePatch, build_patches
from slurm_factory.s3 import is_s3_url
from slurm_factory.secret_input import passphrase_from, private_key_from
from slurm_factory.spack_site_packages import load_site_packages

_E = TypeVar("_E", bound=StrEnum)
_V = TypeVar("_V")


_KEY_ID = re.compile(r"(?:0[xX])?(?:[0-9A-Fa-f]{16}|[0-9A-Fa-f]{40})")
_SHORT_KEY_ID = re.compile(r"(?:0[xX])?[0-9A-Fa-f]{8}")
_IMAGE_REFERENCE = re.compile(
    r"(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?"  # optional registry host[:port]/
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"  # repository path
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"  # :tag
    r"(?:@sha256:[0-9a-f]{64})?"  # @digest
)
SOURCE_SCHEMES = ("http", "https", "file")
# The endpoint of an S3-compatible store (MinIO, Ceph RGW, ...): the option, else the AWS SDKs' own variables.
S3_ENDPOINT_ENVIRONMENT = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
BUILDCACHE_SCHEMES = ("file", "s3", "http", "https")
PUBLISH_SCHEMES = ("file", "s3")
# The native package format of each toolchain family (what `--package all` builds beside the tarball).
NATIVE_PACKAGE_KINDS = {"apt": PackageKind.DEB, "dnf": PackageKind.RPM}
# Formats whose plan is rendered (`--dry-run`, `--plan-dir`) but which no build runs yet: no image of their OS can
# be had where slurm-factory is developed, so nothing has built or verified one (packages/rpm.py).
PLANNED_ONLY_PACKAGE_KINDS = (PackageKind.RPM,)


class _ForArch(BaseModel):
    """The machine a build is for, and the machine it runs on."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    arch: Arch = Arch.AMD64
    # The machine the build runs on (the Docker host): arch != build_arch means a cross or an emulated build.
    build_arch: Arch = Arch.AMD64
    # Built inside an image of `arch` under the host's qemu emulation (instead of by the OS's cross compiler).
    emulated: bool = False

    @property
    def foreign(self) -> bool:
        """For another machine than the build host's: cross-compiled or built under emulation."""
        return self.arch is not self.build_arch

    @property
    def cross(self) -> bool:
        """Built by the OS's cross toolchain for another machine than the build host's."""
        return self.foreign and not self.emulated

    @property
    def _arch_suffix(self) -> str:
        return arch_suffix(self.arch)


class BuildRequest(_ForArch):
    """A validated build request. Frozen: the plan and the build id are derived from it, never the reverse."""

    slurm: SlurmRelease
    toolchain: Toolchain
    engine: Engine
    gpu: bool = False
    # What the build produces (`--package`) and the native packages' release number (packages/versions.py).
    package: PackageKind = PackageKind.TARBALL
    package_release: int = DEFAULT_RELEASE
    # `--package-maintainer` ("Name <email>"); None: the catalog's placeholder.
    package_maintainer: str | None = None
    verify: bool = False
    no_cache: bool = False
    buildcache: BuildcacheMode = BuildcacheMode.NONE
    publish: PublishMode = PublishMode.NONE
    enable_hierarchy: bool = False
    signing_key: str | None = None
    gpg_private_key: SecretBytes | None = None
    gpg_passphrase: SecretStr | None = None
    compiler_version: str | None = None
    use_local_buildcache: bool = False
    slurm_source: str | None = None
    spack_source: str | None = None
    spack_packages_source: str | None = None
    python_wheels: str | None = None
    base_image: str
    buildcache_url: str | None = None
    publish_url: str | None = None
    s3_endpoint_url: str | None = None
    os_packages: OsPackagesMode = OsPackagesMode.BUILD
    spack_packages: str | None = None
    site_packages: dict[str, Any] = {}
    # Applied to the source in this order: slurm-factory's own, then the site's `--patch` files.
    patches: tuple[SourcePatch, ...] = ()
    releases_file: str | None = None
    upgrade_from: str | None = None

    @property
    def compiler_major(self) -> int:
        """The major version of the GCC that compiles Slurm: a `--compiler-version` one, else the OS's."""
        return int((self.compiler_version or self.toolchain.gcc).split(".")[0])

    @property
    def site_patches(self) -> tuple[SourcePatch, ...]:
        return tuple(patch for patch in self.patches if patch.origin == "site")

    @property
    def flavor(self) -> str:
        """`<series>-<toolchain>[-arm64][-gpu]`: what distinguishes one artifact from another in `builds/`."""
        return f"{self.slurm.series}-{self.toolchain.name}{self._arch_suffix}{'-gpu' if self.gpu else ''}"

    @property
    def artifact_filename(self) -> str:
        return f"slurm-{self.flavor}-software.tar.gz"

    @property
    def artifact_root(self) -> str:
        """The single top-level directory inside the tarball, naming the exact release."""
        return f"slurm-{self.slurm.version}-{self.toolchain.name}{self._arch_suffix}{'-gpu' if self.gpu else ''}"

    @property
    def signs(self) -> bool:
        return self.signing_key is not None

    @property
    def builds_tarball(self) -> bool:
        return self.package in (PackageKind.TARBALL, PackageKind.ALL)

    @property
    def builds_packages(self) -> bool:
        """The toolchain OS's native packages (`--package deb|rpm|all`)."""
        return self.package is not PackageKind.TARBALL

    @property
    def native_package_kind(self) -> PackageKind | None:
        """The native format the request builds: `deb` or `rpm`, the toolchain family's for `all`, None for the
        tarball alone."""
        if self.package is PackageKind.TARBALL:
            return None
        if self.package is PackageKind.ALL:
            return NATIVE_PACKAGE_KINDS[self.toolchain.family]
        return self.package


def _choice(enum: type[_E], value: str | _E, option: str) -> _E:
    try:
        return enum(value)
    except ValueError:
        valid = ", ".join(member.value for member in enum)
        raise ConfigurationError(f"{option} {quoted(value)} is invalid; valid values: {valid}") from None


def _normalize_key_id(value: str) -> str:
    compact = value.replace(" ", "")
    if _SHORT_KEY_ID.fullmatch(compact):
        raise ConfigurationError(
            f"--signing-key {quoted(value)} is a 32-bit short key id: another key with the same id is cheap to make",
            hint="give the 64-bit long id (0x + 16 hex digits) or the 40-digit fingerprint: gpg --list-keys "
            "--keyid-format long",
        )
    if not _KEY_ID.fullmatch(compact):
        raise ConfigurationError(
            f"--signing-key {quoted(value)} is not a GPG key id; use 0x followed by 16 hex digits (the long id) "
            "or the 40-digit fingerprint"
        )
    return compact.removeprefix("0x").removeprefix("0X").upper()


def _parse_url(value: str, option: str) -> ParseResult:
    """`urlparse`, with its ValueError (`http://[::1`) as a one-line ConfigurationError naming the option."""
    try:
        parsed = urlparse(value)
        parsed.port  # noqa: B018 -- parsing the port is what refuses `host:notaport`
    except ValueError as error:
        raise ConfigurationError(f"{option} {quoted(value)} is not a valid URL: {error}") from None
    return parsed


def _is_file(path: Path, value: str, option: str) -> bool:
    try:
        return path.is_file()
    except OSError as error:  # a name too long, a loop of symlinks
        raise ConfigurationError(f"{option} {quoted(value)}: {error.strerror}") from None


def _check_source(value: str) -> str:
    parsed = _parse_url(value, "--slurm-source")
    if parsed.scheme and len(parsed.scheme) > 1:  # not a Windows drive letter; Linux paths have no scheme
        if parsed.scheme not in SOURCE_SCHEMES:
            raise ConfigurationError(
                f"--slurm-source {quoted(value)}: unsupported URL scheme {parsed.scheme!r}; use a local path or "
                f"{', '.join(s + '://' for s in SOURCE_SCHEMES)}"
            )
        if parsed.scheme != "file":
            if not parsed.hostname:
                raise ConfigurationError(f"--slurm-source {quoted(value)}: the URL names no host")
            return value
        path = Path(unquote(parsed.path))
    else:
        path = Path(value).expanduser()
    if not _is_file(path, value, "--slurm-source"):
        reason = "no such file" if not path.exists() else "not a regular file"
        raise ConfigurationError(f"--slurm-source {quoted(value)}: {reason}")
    if not os.access(path, os.R_OK):
        raise ConfigurationError(f"--slurm-source {quoted(value)}: file is not readable")
    return str(path.resolve())


def _check_tree_source(value: str, option: str, engine: Engine, *, marker: str, what: str) -> str:
    """A checkout (a directory holding `marker`), a .tar.gz of one, or an http(s) URL of one — for sites that
    cannot clone from GitHub."""
    engine_for(engine).refuse_spack_option(option)
    parsed = _parse_url(value, option)
    if parsed.scheme in ("http", "https") and parsed.netloc:
        return value
    if parsed.scheme and len(parsed.scheme) > 1:
        raise ConfigurationError(
            f"{option} {quoted(value)}: unsupported scheme {parsed.scheme!r}; use a directory, a .tar.gz or http(s)://"
        )
    path = Path(value).expanduser().resolve()
    if path.is_dir():
        if not (path / marker).is_file():
            raise ConfigurationError(f"{option} {quoted(value)}: the directory is not {what} (no {marker})")
        return str(path)
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        return str(path)
    raise ConfigurationError(f"{option} {quoted(value)}: no such directory or .tar.gz file")


def _check_spack_source(value: str, engine: Engine) -> str:
    return _check_tree_source(value, "--spack-source", engine, marker="bin/spack", what="a Spack checkout")


def _check_spack_packages_source(value: str, engine: Engine) -> str:
    return _check_tree_source(
        value,
        "--spack-packages-source",
        engine,
        marker="repos/spack_repo/builtin/repo.yaml",
        what="a spack-packages checkout",
    )


# What the Python that runs Spack needs (see catalog/data/spack.yaml); a --python-wheels directory must have them.
REQUIRED_WHEELS = ("clingo", "boto3")


def _check_python_wheels(value: str, engine: Engine, arch: Arch) -> str:
    """A directory of wheels (`pip download`) for the Python that runs Spack, so the image needs no PyPI; clingo's
    compiled wheel must be for the machine the build runs on (the arch's own, under emulation)."""
    engine_for(engine).refuse_spack_option("--python-wheels")
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise ConfigurationError(f"--python-wheels {quoted(value)}: no such directory")
    wheels = sorted(wheel for wheel in path.glob("*.whl") if wheel.is_file())  # a directory named *.whl is none
    present = {wheel.name.split("-")[0].lower() for wheel in wheels}
    missing = [name for name in REQUIRED_WHEELS if name not in present]
    pip_download = "pip download --only-binary=:all: --python-version X.Y -d DIR " + " ".join(REQUIRED_WHEELS)
    if missing:
        raise ConfigurationError(
            f"--python-wheels {quoted(value)}: no wheel of {', '.join(missing)} in it",
            hint=f"fill it with `{pip_download}` for the toolchain's Python",
        )
    machine = LINUX_MACHINES[arch]
    clingo = [wheel.name for wheel in wheels if wheel.name.lower().startswith("clingo-")]
    if not any(_wheel_runs_on(name, machine) for name in clingo):
        raise ConfigurationError(
            f"--python-wheels {quoted(value)}: no clingo wheel for {machine} ({arch.value}) in it, only "
            + ", ".join(clingo),
            hint=f"add `{pip_download} --platform manylinux_2_28_{machine}`",
        )
    return str(path)


def _wheel_runs_on(filename: str, machine: str) -> bool:
    """A wheel's platform tags (`...-cp313-cp313-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl`) name `machine`,
    or the wheel is pure Python (`any`)."""
    platforms = filename.removesuffix(".whl").split("-")[-1].split(".")
    return any(tag == "any" or tag.endswith("_" + machine) for tag in platforms)


def _check_url(value: str, option: str, schemes: tuple[str, ...], *, allow_path: bool) -> str:
    parsed = _parse_url(value, option)
    if not parsed.scheme:
        if allow_path and value.startswith(("/", "~", ".")):
            return Path(value).expanduser().resolve().as_uri()
        raise ConfigurationError(
            f"{option} {quoted(value)} is not a URL; use {', '.join(s + '://' for s in schemes)}"
            + (" or an absolute path" if allow_path else "")
        )
    if parsed.scheme not in schemes:
        raise ConfigurationError(
            f"{option} {quoted(value)}: unsupported scheme {parsed.scheme!r}; "
            f"valid: {', '.join(s + '://' for s in schemes)}"
        )
    if parsed.scheme == "file" and (parsed.netloc or not parsed.path.startswith("/")):
        raise ConfigurationError(f"{option} {quoted(value)}: a file:// URL needs an absolute path (file:///srv/mirror)")
    if parsed.scheme != "file" and not parsed.netloc:
        raise ConfigurationError(f"{option} {quoted(value)}: the URL names no host or bucket")
    return value


def without_credentials(url: str) -> str:
    """A URL as printed: a `user:password@` in it becomes `***@` (plans, summaries and errors are shared)."""
    parsed = urlparse(url) if "://" in url else None
    if parsed is None or "@" not in parsed.netloc:
        return url
    return parsed._replace(netloc="***@" + parsed.netloc.rpartition("@")[2]).geturl()


def file_url_path(url: str | None) -> Path | None:
    """The local path of a `file://` URL (percent-decoded); None for any other URL."""
    if url is None:
        return None
    parsed = urlparse(url)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def _optional(check: Callable[..., _V], value: Any, *context: Any) -> _V | None:
    """`check(value, *context)`, or None for an option that was not given."""
    return None if value is None else check(value, *context)


def _check_publish_url(value: str | None) -> str | None:
    return _check_url(value, "--publish-url", PUBLISH_SCHEMES, allow_path=True) if value is not None else None


def _check_buildcache_url(value: str) -> str:
    url = _check_url(value, "--buildcache-url", BUILDCACHE_SCHEMES, allow_path=True)
    directory = file_url_path(url)
    if directory is not None and not directory.is_dir():
        raise ConfigurationError(f"--buildcache-url {quoted(value)}: no such directory {directory}")
    return url


def _s3_endpoint(value: str | None, urls: tuple[str | None, ...]) -> str | None:
    """The S3 endpoint for the request's s3:// mirrors: `--s3-endpoint-url`, else AWS_ENDPOINT_URL_S3 /
    AWS_ENDPOINT_URL; None means AWS itself."""
    uses_s3 = any(is_s3_url(url) for url in urls)
    if value is not None and not uses_s3:
        raise ConfigurationError("--s3-endpoint-url is given but no mirror is an s3:// URL")
    if not uses_s3:
        return None
    option = "--s3-endpoint-url"
    if value is None:
        option, value = next(
            ((name, os.environ[name]) for name in S3_ENDPOINT_ENVIRONMENT if os.environ.get(name)), (option, None)
        )
    if value is None:
        return None
    parsed = _parse_url(value, option)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigurationError(f"{option} {quoted(value)}: use http(s)://host[:port] of the S3-compatible endpoint")
    return value.rstrip("/")


def _check_base_image(value: str) -> str:
    if not _IMAGE_REFERENCE.fullmatch(value):
        raise ConfigurationError(
            f"--base-image {quoted(value)} is not a Docker image reference (e.g. debian:trixie or "
            "registry.example.org:5000/library/ubuntu:noble)"
        )
    return value


def _check_engine_options(
    engine: Engine,
    toolchain: Toolchain,
    *,
    gpu: bool,
    buildcache: BuildcacheMode,
    publish: PublishMode,
    enable_hierarchy: bool,
    use_local_buildcache: bool,
    compiler_version: str | None,
    packages: bool = False,
) -> None:
    """Options that only the Spack engine can honour are refused for another engine, not silently dropped."""
    chosen = engine_for(engine)
    spack_only = {
        "--buildcache": buildcache is not BuildcacheMode.NONE,
        "--use-local-buildcache": use_local_buildcache,
        "--compiler-version": compiler_version is not None,
        "--enable-hierarchy": enable_hierarchy,
        "--publish deps": publish is PublishMode.DEPS,
    }
    for option, given in spack_only.items():
        if given:
            chosen.refuse_spack_option(
                option, why="builds against the OS's packaged libraries and has no Spack buildcache or module hierarchy"
            )
    if gpu and not chosen.supports_gpu(toolchain):
        elsewhere = _gpu_toolchains(chosen)
        hint = (
            f"drop --gpu, or use a toolchain whose OS packages them ({elsewhere}); the Spack engine builds GPU "
            "plugins here, but only the tarball"
            if packages
            else f"use --engine spack, or a toolchain whose OS packages them ({elsewhere})"
        )
        raise ConfigurationError(
            f"--gpu with --engine {engine.value} is not available on {toolchain.name}: {toolchain.os} packages no NVML "
            "and RSMI development headers",
            hint=hint,
        )


def _gpu_toolchains(engine: Any) -> str:
    from slurm_factory.catalog.toolchains import load_toolchains

    return ", ".join(name for name, toolchain in load_toolchains().items() if engine.supports_gpu(toolchain))


def _check_package(
    kind: PackageKind,
    release: str | None,
    *,
    engine: Engine,
    toolchain: Toolchain,
    foreign: bool,
    delivery: PackageDelivery,
) -> int:
    """`--package deb|rpm|all` needs the native engine on a toolchain of that format (apt: deb, dnf: rpm) building
    for this host's arch; `--package-release` means something only then. Returns the release number."""
    if kind is PackageKind.TARBALL:
        if release is not None:
            raise ConfigurationError(
                f"--package-release {release} is given but --package is tarball; it numbers native packages",
                hint="add --package deb (or rpm, or all), or drop --package-release",
            )
        return DEFAULT_RELEASE
    if not engine_for(engine).builds_native_packages:
        raise ConfigurationError(
            f"--package {kind.value} needs the native engine; the {engine.value} engine's libraries are its own, "
            "not the OS's, and a package manager cannot resolve them",
            hint="add --engine native",
        )
    _check_package_format(kind, toolchain)
    if foreign:
        raise ConfigurationError(
            f"--package {kind.value} builds for this host's arch only; a foreign arch's packages are not built yet",
            hint="drop --arch, or build the tarball (--package tarball)",
        )
    if NATIVE_PACKAGE_KINDS[toolchain.family] is PackageKind.RPM:
        _check_rpm_delivery(kind, delivery)
    else:
        _check_package_delivery(kind, delivery)
    return check_package_release(release) if release is not None else DEFAULT_RELEASE


def _toolchains_of(family: str) -> str:
    from slurm_factory.catalog.toolchains import load_toolchains

    return ", ".join(name for name, toolchain in load_toolchains().items() if toolchain.family == family)


def _check_package_format(kind: PackageKind, toolchain: Toolchain) -> None:
    """.deb packages on apt toolchains, .rpm packages on dnf ones; `all` is the toolchain's own format."""
    native = NATIVE_PACKAGE_KINDS[toolchain.family]
    if kind in (PackageKind.ALL, native):
        return
    if kind is PackageKind.DEB:
        raise ConfigurationError(
            f"--package deb builds .deb packages, for apt toolchains; {toolchain.name} ({toolchain.os}) uses "
            f"{toolchain.family}, whose .rpm packages are not built yet (--package rpm renders their plan)",
            hint="use --package rpm --dry-run (with --plan-dir DIR) for the rpm plan, --package tarball to build on "
            f"this toolchain, or an apt toolchain ({_toolchains_of('apt')})",
        )
    raise ConfigurationError(
        f"--package {kind.value} builds .rpm packages, for dnf toolchains; {toolchain.name} ({toolchain.os}) uses "
        f"{toolchain.family}",
        hint=f"use --package deb (or all) on this toolchain, or a dnf toolchain ({_toolchains_of('dnf')})",
    )


def _check_rpm_delivery(kind: PackageKind, delivery: PackageDelivery) -> None:
    """.rpm packages are planned only: nothing publishes, signs or verifies them yet, so an option that would is
    refused instead of acting on the tarball alone."""
    given = {
        "--publish": delivery.publish is not PublishMode.NONE,
        "--signing-key": delivery.signs,
        "--verify": delivery.verify,
        "--upgrade-from": delivery.upgrade_from is not None,
    }
    asked = [option for option, present in given.items() if present]
    if asked:
        raise ConfigurationError(
            f"{', '.join(asked)} with --package {kind.value} on a dnf toolchain: .rpm packages are only planned yet; "
            "no dnf repository is written, signed or verified",
            hint=f"drop {', '.join(asked)} to render the rpm plan (--dry-run, with --plan-dir DIR to write it), or "
            "use --package tarball",
        )


def require_buildable_packages(request: BuildRequest) -> None:
    """Refuse a build that would run (not `--dry-run`) of packages whose format is planned only (.rpm): their plan
    is rendered and unit-tested, but no package of it has been built or verified. `builder.build()` calls this
    after `make_request` when it is not a dry run; the request itself does not know about `--dry-run`."""
    kind = request.native_package_kind
    if kind not in PLANNED_ONLY_PACKAGE_KINDS:
        return
    raise ConfigurationError(
        f"--package {request.package.value} on {request.toolchain.name} builds .{kind} packages, which are not built "
        f"yet: the {kind} plan (slurm-smd.spec, its build script and packaging image) can be rendered, but no .{kind} "
        "package has been built or verified from it",
        hint="add --dry-run to see the plan (with --plan-dir DIR, to write it); --package tarball builds on this "
        "toolchain",
    )


# "Name <local@domain>", as it lands in debian/control, debian/changelog and the rpm spec. The name: letters (any
# script), digits, single spaces and a few punctuation marks; never what a spec expands (`%`), dpkg substitutes
# (`$`), a field separator (`,`) or anything invisible. The address: a plain mailbox on a domain with a dot.
_NAME_PUNCTUATION = frozenset(" .-'_()&/+")
_ADDRESS = re.compile(r"[A-Za-z0-9._+-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}")
MAX_MAINTAINER = 200
# What the catalogs name when no maintainer is given; given explicitly, it is the same request.
PLACEHOLDER_MAINTAINER = "slurm-factory <slurm-factory@localhost>"


def _maintainer_name_is_safe(name: str) -> bool:
    if not name or name != name.strip() or "  " in name:
        return False
    return all(character in _NAME_PUNCTUATION or unicodedata.category(character)[0] in "LMN" for character in name)


def _check_package_maintainer(value: object, kind: PackageKind) -> str | None:
    """`--package-maintainer 'Name <email>'`, for native packages only; None for the placeholder."""
    if value is None:
        return None
    if kind is PackageKind.TARBALL:
        raise ConfigurationError(
            f"--package-maintainer {quoted(value)} is given but --package is tarball; it names the native packages' "
            "maintainer",
            hint="add --package deb (or rpm, or all), or drop --package-maintainer",
        )
    text = value.strip() if isinstance(value, str) else ""
    if text == PLACEHOLDER_MAINTAINER:
        return None
    name, _, rest = text.rpartition(" <")
    address = rest[:-1] if rest.endswith(">") else ""
    try:
        text.encode("utf-8")
        encodes = True
    except UnicodeEncodeError:  # undecodable bytes from the command line (surrogate escapes)
        encodes = False
    if not (encodes and len(text) <= MAX_MAINTAINER and _maintainer_name_is_safe(name) and _ADDRESS.fullmatch(address)):
        raise ConfigurationError(
            f"--package-maintainer {quoted(value)}: expected 'Name <user@domain.tld>' in UTF-8, at most "
            f"{MAX_MAINTAINER} characters, the name of letters, digits, single spaces and . - ' _ ( ) & / +",
            hint="e.g. --package-maintainer 'HPC Team <hpc@example.org>'",
        )
    return text


@dataclass(frozen=True)
class PackageDelivery:
    """What happens to native packages after the build: publishing, verification, an upgrade source."""

    publish: PublishMode
    publish_url: str | None
    verify: bool
    upgrade_from: str | None
    signs: bool = False


def _check_package_delivery(kind: PackageKind, delivery: PackageDelivery) -> None:
    """Packages are published into a file:// apt repository and verified by installing them from it with apt."""
    if is_s3_url(delivery.publish_url):
        raise ConfigurationError(
            f"--package {kind.value} publishes an apt repository into file:// mirrors; s3:// is not supported for "
            "packages yet",
            hint="publish into a file:// directory and serve or sync it, or use --package tarball for s3://",
        )
    if delivery.verify and delivery.publish is PublishMode.NONE:
        raise ConfigurationError(
            f"--verify with --package {kind.value} installs the packages with apt from their signed repository: it "
            "needs --publish slurm (and --signing-key)",
            hint="add --publish slurm --signing-key KEY (the repository is the local buildcache unless --publish-url)",
        )
    if delivery.signs and delivery.publish is PublishMode.NONE and kind is PackageKind.DEB:
        raise ConfigurationError(
            "--signing-key with --package deb signs the apt repository, which only --publish writes; the .deb files "
            "are not signed one by one",
            hint="add --publish slurm (the repository is the local buildcache unless --publish-url), or drop the key",
        )
    if delivery.upgrade_from is not None and kind is PackageKind.DEB:
        raise ConfigurationError(
            "--upgrade-from names a tarball; packages are upgraded from the earlier release in their repository",
            hint="drop --upgrade-from (verification upgrades from the repository's previous release of this Slurm)",
        )


def _build_arch() -> Arch:
    arch = host_arch()
    if arch is None:
        import platform

        raise ConfigurationError(
            f"this host's machine {platform.machine()!r} is not a build host; valid: x86_64 (amd64), aarch64 (arm64)"
        )
    return arch


@dataclass(frozen=True)
class _ArchChoice:
    arch: Arch
    emulated: bool = False
    base_image: str | None = None  # the arch's own image, for an emulated build


def _check_arch(
    value: str | Arch | None,
    build_arch: Arch,
    toolchain: Toolchain,
    engine: Engine,
    *,
    gpu: bool,
    emulate: bool = False,
) -> _ArchChoice:
    """`--arch` (default: the host's) and `--emulate`. Only what the catalog says a toolchain can build for an arch
    is accepted; the rest is refused here, before any container starts, with what is supported. A foreign arch is
    cross-compiled where the catalog has the OS's cross toolchain, built under emulation otherwise or when asked."""
    arch = build_arch if value is None else _choice(Arch, value, "--arch")
    if emulate and arch is build_arch:
        raise ConfigurationError(
            f"--emulate builds for another machine than this {build_arch.value} host; it needs --arch of that machine",
            hint="add --arch arm64, or drop --emulate",
        )
    if arch is build_arch and arch is Arch.AMD64:
        return _ArchChoice(arch)
    support = toolchain.arches.get(arch.value)
    if support is None or engine.value not in support.engines:
        raise ConfigurationError(f"--arch {arch.value} {_unsupported(arch, toolchain, engine)}")
    if arch is build_arch:
        return _ArchChoice(arch)
    if build_arch is not Arch.AMD64:
        raise ConfigurationError(
            f"--arch {arch.value} from an {build_arch.value} host is not supported: only builds from amd64 to arm64 are"
        )
    # An engine without a cross path (Spack) builds a foreign arch inside that arch's image of the OS.
    emulated = emulate or not support.cross or not engine_for(engine).cross_compiles
    if emulated and support.base_image is None:
        raise ConfigurationError(
            f"--arch {arch.value} under emulation: the catalog has no {arch.value} image of {toolchain.name}"
        )
    if gpu:
        raise ConfigurationError(
            f"--gpu with --arch {arch.value} is not supported yet: no GPU development packages of that arch are set up",
            hint="drop --gpu or build on an arm64 host",
        )
    return _ArchChoice(arch, emulated, support.base_image if emulated else None)


def _unsupported(arch: Arch, toolchain: Toolchain, engine: Engine) -> str:
    """Why the catalog refuses `arch` for this toolchain and engine, and what does build it."""
    from slurm_factory.catalog.toolchains import load_toolchains

    support = toolchain.arches.get(arch.value)
    if support is not None:
        return (
            f"with --engine {engine.value} is not supported on {toolchain.name}; it builds {arch.value} with "
            f"--engine {', '.join(support.engines)}"
        )
    builders = [
        f"{name} (--engine {', '.join(entry.engines)})"
        for name, candidate in load_toolchains().items()
        if (entry := candidate.arches.get(arch.value)) is not None
    ]
    return f"is not supported on {toolchain.name}; supported: {', '.join(builders) or 'no toolchain'}"


def _os_packages_mode(value: str | OsPackagesMode | None, engine: Engine) -> OsPackagesMode:
    """The engine's default (Spack: `build`); an engine that always builds against the OS (native) refuses the
    option rather than accepting and ignoring it."""
    chosen = engine_for(engine)
    if value is None:
        return chosen.default_os_packages
    if not chosen.chooses_os_packages:
        chosen.refuse_spack_option("--os-packages", why="always builds against the OS's packages")
    return _choice(OsPackagesMode, value, "--os-packages")


def _site_packages(value: str | None, engine: Engine) -> tuple[str | None, dict[str, Any]]:
    if value is None:
        return None, {}
    engine_for(engine).refuse_spack_option("--spack-packages")
    return load_site_packages(value)


def _check_signing(
    publish: PublishMode,
    signing_key: str | None,
    private_key: SecretBytes | None,
    *,
    passphrase: SecretStr | None,
) -> None:
    if publish is not PublishMode.NONE and signing_key is None:
        raise ConfigurationError(
            f"--publish {publish.value} needs --signing-key: published packages and tarballs are always signed",
            hint="give --signing-key KEYID (and --gpg-private-key if the key is not in your keyring)",
        )
    if private_key is not None and signing_key is None:
        raise ConfigurationError("--gpg-private-key needs --signing-key to say which key in it signs")
    if passphrase is not None and private_key is None and signing_key is None:
        raise ConfigurationError("--gpg-passphrase is given but there is no key to unlock; add --signing-key")


def _check_upgrade_from(value: str | None, *, verify: bool) -> str | None:
    """`--upgrade-from` is verification's: an artifact file, and only with --verify (the release rule is checked
    once the new request is known, before anything builds)."""
    if value is None:
        return None
    if not verify:
        raise ConfigurationError(
            "--upgrade-from needs --verify: it upgrades verification's cluster", hint="add --verify"
        )
    return str(_existing_file(value, "--upgrade-from"))


SITE_RELEASES_FILE = "releases.tsv"


def _site_releases_file(value: str | None, home: Path | None) -> Path | None:
    """`--releases-file`, else `<home>/releases.tsv` when there is one."""
    if value is not None:
        return _existing_file(value, "--releases-file")
    if home is None:
        from slurm_factory.config import default_home

        home = default_home()
    default = home / SITE_RELEASES_FILE
    if default.exists() or default.is_symlink():  # there, so meant: a directory or a broken link is an error
        return _existing_file(str(default), "the site releases file")
    return None


def _existing_file(value: str, option: str) -> Path:
    """`value` names a regular file (after `~`), refused in words that say what it is instead."""
    if not value.strip():
        raise ConfigurationError(f"{option} is empty: name a file")
    try:
        path = Path(value).expanduser()
    except RuntimeError:  # ~user of a user this host does not know
        raise ConfigurationError(f"{option} {quoted(value)}: no such user's home directory") from None
    if not _is_file(path, value, option):
        if path.is_symlink() and not path.exists():
            reason = f"a broken symbolic link (to {quoted(str(path.readlink()))})"
        else:
            reason = "not a regular file" if path.exists() else "no such file"
        raise ConfigurationError(f"{option} {quoted(value)}: {reason}")
    return path.resolve()


def site_releases(home: Path | None, releases_file: str | None = None) -> tuple[SlurmRelease, ...]:
    """A site's releases (`releases_file`, else `<home>/releases.tsv` when there is one), each line checked."""
    return _read_site_releases(_site_releases_file(releases_file, home), given=releases_file is not None)


def _read_site_releases(path: Path | None, *, given: bool) -> tuple[SlurmRelease, ...]:
    option = "--releases-file" if given else "the site releases file"
    return load_site_releases(path, option) if path is not None else ()


def make_request(*, home: Path | None = None, **given: Unpack[BuildOptions]) -> BuildRequest:
    """Validate raw option values into a `BuildRequest`, or raise `ConfigurationError` naming the option. `home` is
    where a site's `releases.tsv` is looked for (default: the settings' home)."""
    raw = checked_options(BuildOptions, given, "build()")
    releases_file = _site_releases_file(raw["releases_file"], home)
    releases_file_given = raw["releases_file"] is not None
    release = resolve_release(raw["slurm_version"], _read_site_releases(releases_file, given=releases_file_given))
    chosen_toolchain = get_toolchain(raw["toolchain"])
    chosen_engine = _choice(Engine, raw["engine"], "--engine")
    buildcache_mode = _choice(BuildcacheMode, raw["buildcache"], "--buildcache")
    publish_mode = _choice(PublishMode, raw["publish"], "--publish")
    package_kind = _choice(PackageKind, raw["package"], "--package")
    key_id = _normalize_key_id(raw["signing_key"]) if raw["signing_key"] is not None else None
    # The SLURM_FACTORY_GPG_* variables only matter to a signed build: a globally exported secret must not break
    # an unsigned one.
    private_key = private_key_from(raw["gpg_private_key"], use_environment=key_id is not None)
    passphrase = passphrase_from(raw["gpg_passphrase"], use_environment=key_id is not None)
    if raw["compiler_version"] is not None:
        check_gcc_version(raw["compiler_version"])

    _check_engine_options(
        chosen_engine,
        chosen_toolchain,
        gpu=raw["gpu"],
        buildcache=buildcache_mode,
        publish=publish_mode,
        enable_hierarchy=raw["enable_hierarchy"],
        use_local_buildcache=raw["use_local_buildcache"],
        compiler_version=raw["compiler_version"],
        packages=package_kind is not PackageKind.TARBALL,
    )
    _check_signing(publish_mode, key_id, private_key, passphrase=passphrase)
    if (
        raw["compiler_version"] is not None
        and buildcache_mode is BuildcacheMode.NONE
        and not raw["use_local_buildcache"]
    ):
        arch = "" if raw["arch"] in (None, Arch.AMD64) else f" --arch {raw['arch']}"  # the GCC of that machine
        raise ConfigurationError(
            f"--compiler-version {raw['compiler_version']} needs a binary mirror to install that GCC from",
            hint=f"run `slurm-factory build-compiler --compiler-version {raw['compiler_version']} --toolchain "
            f"{raw['toolchain']}{arch}`, then add --use-local-buildcache",
        )
    if raw["buildcache_url"] is not None and buildcache_mode is BuildcacheMode.NONE and not raw["use_local_buildcache"]:
        raise ConfigurationError("--buildcache-url is given but nothing reads a buildcache; add --buildcache deps|all")
    if raw["publish_url"] is not None and publish_mode is PublishMode.NONE:
        raise ConfigurationError("--publish-url is given but --publish is none; add --publish slurm|deps|all")
    os_packages_mode = _os_packages_mode(raw["os_packages"], chosen_engine)
    site_file, site_packages = _site_packages(raw["spack_packages"], chosen_engine)
    build_arch = _build_arch()
    chosen = _check_arch(
        raw["arch"], build_arch, chosen_toolchain, chosen_engine, gpu=raw["gpu"], emulate=raw["emulate"]
    )

    return BuildRequest(
        slurm=release,
        toolchain=chosen_toolchain,
        engine=chosen_engine,
        arch=chosen.arch,
        build_arch=build_arch,
        emulated=chosen.emulated,
        gpu=raw["gpu"],
        package=package_kind,
        package_maintainer=_check_package_maintainer(raw["package_maintainer"], package_kind),
        package_release=_check_package(
            package_kind,
            raw["package_release"],
            engine=chosen_engine,
            toolchain=chosen_toolchain,
            foreign=chosen.arch is not build_arch,
            delivery=PackageDelivery(
                publish_mode,
                raw["publish_url"],
                verify=raw["verify"],
                upgrade_from=raw["upgrade_from"],
                signs=raw["signing_key"] is not None,
            ),
        ),
        verify=raw["verify"],
        no_cache=raw["no_cache"],
        buildcache=buildcache_mode,
        publish=publish_mode,
        enable_hierarchy=raw["enable_hierarchy"],
        signing_key=key_id,
        gpg_private_key=private_key,
        gpg_passphrase=passphrase,
        compiler_version=raw["compiler_version"],
        use_local_buildcache=raw["use_local_buildcache"],
        slurm_source=_optional(_check_source, raw["slurm_source"]),
        spack_source=_optional(_check_spack_source, raw["spack_source"], chosen_engine),
        spack_packages_source=_optional(_check_spack_packages_source, raw["spack_packages_source"], chosen_engine),
        python_wheels=_optional(_check_python_wheels, raw["python_wheels"], chosen_engine, chosen.arch),
        base_image=_check_base_image(raw["base_image"])
        if raw["base_image"] is not None
        else chosen.base_image or chosen_toolchain.base_image,
        buildcache_url=_optional(_check_buildcache_url, raw["buildcache_url"]),
        publish_url=_check_publish_url(raw["publish_url"]),
        s3_endpoint_url=_s3_endpoint(raw["s3_endpoint_url"], (raw["buildcache_url"], raw["publish_url"])),
        os_packages=os_packages_mode,
        spack_packages=site_file,
        site_packages=site_packages,
        patches=build_patches(raw["patches"]),
        upgrade_from=_check_upgrade_from(raw["upgrade_from"], verify=raw["verify"]),
        releases_file=str(releases_file) if releases_file is not None else None,
    )


class CompilerRequest(_ForArch):
    """A validated `build-compiler` request: one GCC release for one toolchain (and arch), pushed to a binary
    mirror. Spack builds a foreign arch's GCC inside that arch's image, under emulation."""

    gcc_version: str
    toolchain: Toolchain
    no_cache: bool = False
    publish: PublishMode = PublishMode.NONE
    signing_key: str | None = None
    gpg_private_key: SecretBytes | None = None
    gpg_passphrase: SecretStr | None = None
    publish_url: str | None = None
    s3_endpoint_url: str | None = None
    spack_source: str | None = None
    spack_packages_source: str | None = None
    python_wheels: str | None = None
    base_image: str

    @property
    def artifact_root(self) -> str:
        return f"gcc-{self.gcc_version}-{self.toolchain.name}{self._arch_suffix}"

    @property
    def artifact_filename(self) -> str:
        return f"{self.artifact_root}-compiler.tar.gz"


def make_compiler_request(**given: Unpack[CompilerOptions]) -> CompilerRequest:
    """Validate `build-compiler` options; the same rules (and messages) as `build-slurm` where they overlap."""
    raw = checked_options(CompilerOptions, given, "build_compiler()")
    version = check_gcc_version(raw["compiler_version"])
    chosen_toolchain = get_toolchain(raw["toolchain"])
    publish_mode = _choice(PublishMode, raw["publish"], "--publish")
    key_id = _normalize_key_id(raw["signing_key"]) if raw["signing_key"] is not None else None
    private_key = private_key_from(raw["gpg_private_key"], use_environment=key_id is not None)
    passphrase = passphrase_from(raw["gpg_passphrase"], use_environment=key_id is not None)
    if publish_mode in (PublishMode.SLURM, PublishMode.DEPS):
        raise ConfigurationError(
            f"build-compiler --publish {publish_mode.value}: a compiler is published with its dependencies or not "
            "at all; valid values: none (the local buildcache only), all",
        )
    _check_signing(publish_mode, key_id, private_key, passphrase=passphrase)
    if raw["publish_url"] is not None and publish_mode is PublishMode.NONE:
        raise ConfigurationError("--publish-url is given but --publish is none; add --publish all")
    build_arch = _build_arch()
    chosen = _check_arch(raw["arch"], build_arch, chosen_toolchain, Engine.SPACK, gpu=False)
    return CompilerRequest(
        gcc_version=version,
        toolchain=chosen_toolchain,
        arch=chosen.arch,
        build_arch=build_arch,
        emulated=chosen.emulated,
        no_cache=raw["no_cache"],
        publish=publish_mode,
        signing_key=key_id,
        gpg_private_key=private_key,
        gpg_passphrase=passphrase,
        publish_url=_check_publish_url(raw["publish_url"]),
        s3_endpoint_url=_s3_endpoint(raw["s3_endpoint_url"], (raw["publish_url"],)),
        spack_source=_optional(_check_spack_source, raw["spack_source"], Engine.SPACK),
        spack_packages_source=_optional(_check_spack_packages_source, raw["spack_packages_source"], Engine.SPACK),
        python_wheels=_optional(_check_python_wheels, raw["python_wheels"], Engine.SPACK, chosen.arch),
        base_image=_check_base_image(raw["base_image"])
        if raw["base_image"] is not None
        else chosen.base_image or chosen_toolchain.base_image,
    )
