"""The `slurm-factory` command line: a thin layer that maps options onto the Python API.

Errors print one line (and a hint); a traceback only with `--verbose`. Exit codes come from the exception classes.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from slurm_factory import __version__
from slurm_factory.choices import (
    DEFAULT_SLURM_VERSION,
    DEFAULT_TOOLCHAIN,
    Arch,
    BuildcacheMode,
    Engine,
    OsPackagesMode,
    PublishMode,
)
from slurm_factory.exceptions import (
    EXIT_FAILURE,
    EXIT_USAGE,
    BuildError,
    ConfigurationError,
    SlurmFactoryError,
    VerificationError,
)

# Everything heavy (pydantic models, the catalog, Docker, ELF parsing) is imported inside the commands that need it,
# so `--help` and shell completion stay fast.
if TYPE_CHECKING:
    from slurm_factory.builder import BuildResult
    from slurm_factory.config import Settings
    from slurm_factory.plan import BuildPlan, CompilerPlan, PlanFile
    from slurm_factory.preflight import Preflight
    from slurm_factory.progress import Display

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)
_P = ParamSpec("_P")
_R = TypeVar("_R")
EXIT_INTERRUPTED = 130
# Libraries that log at DEBUG while they are imported (the SBOM library registers hundreds of classes).
_CHATTY_LIBRARIES = ("cyclonedx", "py_serializable", "serializable")


@dataclass
class _State:
    project_name: str | None = None
    settings: Settings | None = None
    verbose: bool = False


state = _State()

app = typer.Typer(
    name="slurm-factory",
    help="Build relocatable, verified, signed Slurm artifacts inside Docker toolchain containers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    # Plain help: Rich's help panels cost ~0.1 s of imports and rendering on every `--help`; errors still use Rich.
    rich_markup_mode=None,
)


def _settings() -> Settings:
    """The settings, loaded on first use (a bad IF_PROJECT_NAME must not break `--help`)."""
    if state.settings is None:
        from slurm_factory.config import load_settings

        state.settings = load_settings(state.project_name)
    return state.settings


def _print_error(error: SlurmFactoryError) -> None:
    # Messages quote user input: never interpret them as Rich markup.
    stderr.print(Text("error: ", style="bold red") + Text(error.message), highlight=False)
    if error.hint:
        stderr.print(Text("hint: ", style="dim") + Text(error.hint), highlight=False)
    if isinstance(error, BuildError):
        for line in error.tail:
            stderr.print(f"  | {line}", style="dim", highlight=False, markup=False)
        if error.log_path:
            stderr.print(f"log: {error.log_path}", highlight=False, markup=False)
    if isinstance(error, VerificationError) and error.report_path:
        stderr.print(f"report: {error.report_path}", highlight=False, markup=False)


def _one_line_errors(command: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn our exceptions into one line (+ hint) and their exit code; a traceback only with --verbose."""

    @functools.wraps(command)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return command(*args, **kwargs)
        except SlurmFactoryError as error:
            if state.verbose:
                traceback.print_exc()
            _print_error(error)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            stderr.print(_interrupted_message(), highlight=False, markup=False)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as error:
            if state.verbose:
                raise
            stderr.print(Text("error: ", style="bold red") + Text(f"unexpected {type(error).__name__}: {error}"))
            stderr.print("[dim]hint:[/] run with --verbose for the traceback", highlight=False)
            raise typer.Exit(EXIT_FAILURE) from None

    return wrapper


def _interrupted_message() -> str:
    """Only a run that started containers says they were removed (they are, by their context managers)."""
    docker_layer = sys.modules.get("slurm_factory.docker_layer")
    started = docker_layer.DockerSession.containers_created if docker_layer is not None else 0
    return f"interrupted; the {started} container(s) of this run were removed" if started else "interrupted"


def _version_callback(value: bool) -> None:
    if value:
        stdout.print(f"slurm-factory {__version__}")
        raise typer.Exit()


@app.callback()
@_one_line_errors
def _global_options(
    project_name: Annotated[
        str | None,
        typer.Option(
            "--project-name",
            # IF_PROJECT_NAME is read by the settings themselves, so an error names where the value came from.
            help="Namespace (label and name prefix) of every Docker resource this tool creates. Env: IF_PROJECT_NAME.",
            show_default="slurm-factory",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging; full tracebacks on error.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    state.verbose = verbose
    state.project_name = project_name
    state.settings = None
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    for name in _CHATTY_LIBRARIES:  # -v is for our debug lines, not every class a serializer registers
        logging.getLogger(name).setLevel(logging.WARNING)


def _warn_command_line_secrets(gpg_private_key: str | None, gpg_passphrase: str | None) -> None:
    given = []
    if gpg_private_key is not None and not gpg_private_key.startswith("@"):
        given.append("--gpg-private-key")
    if gpg_passphrase is not None:
        given.append("--gpg-passphrase")
    if given:
        stderr.print(
            f"[yellow]warning:[/] {' and '.join(given)} on the command line can be read by other users of this host "
            "(ps, shell history); prefer @path, --gpg-passphrase-file or the SLURM_FACTORY_GPG_* variables"
        )


def _passphrase(gpg_passphrase: str | None, gpg_passphrase_file: Path | None) -> str | None:
    if gpg_passphrase is not None and gpg_passphrase_file is not None:
        raise ConfigurationError("--gpg-passphrase and --gpg-passphrase-file are mutually exclusive; give one")
    if gpg_passphrase_file is not None:
        from slurm_factory.secrets import read_passphrase_file

        return read_passphrase_file(str(gpg_passphrase_file))
    return gpg_passphrase


def _display(json_output: bool) -> Display:
    from slurm_factory.progress import RichDisplay, SilentDisplay

    if json_output or not stderr.is_terminal:
        return SilentDisplay()
    return RichDisplay(stderr)


def _complete_toolchain(incomplete: str) -> list[tuple[str, str]]:
    """Shell completion: the catalog's toolchains, with their OS."""
    from slurm_factory.catalog import load_toolchains

    return [(name, t.os) for name, t in load_toolchains().items() if name.startswith(incomplete)]


def _complete_slurm_version(incomplete: str) -> list[tuple[str, str]]:
    """Shell completion: every series (newest first, meaning its newest patch) and every exact release."""
    series = _releases_by_series()
    choices = [(name, f"newest: {versions[-1]}") for name, versions in reversed(series.items())]
    choices += [(version, f"release of {name}") for name, versions in series.items() for version in versions]
    return [(value, text) for value, text in choices if value.startswith(incomplete)]


def _complete_gcc_version(incomplete: str) -> list[str]:
    """Shell completion: the GCC releases `build-compiler` knows."""
    from slurm_factory.catalog.compilers import load_gcc_catalog

    return [version for version in load_gcc_catalog().versions if version.startswith(incomplete)]


SlurmVersionOption = Annotated[
    str,
    typer.Option(
        "--slurm-version",
        help="Series (newest patch) or exact release, e.g. 25.11 or 24.11.5.",
        autocompletion=_complete_slurm_version,
    ),
]
ToolchainOption = Annotated[
    str,
    typer.Option("--toolchain", help="OS toolchain: see `slurm-factory list`.", autocompletion=_complete_toolchain),
]
NoCacheOption = Annotated[
    bool, typer.Option("--no-cache", help="Rebuild everything: no Docker layer cache, buildcache or ccache reuse.")
]
PublishOption = Annotated[
    PublishMode, typer.Option("--publish", help="What to publish: none, slurm, deps or all.", case_sensitive=False)
]
SigningKeyOption = Annotated[
    str | None, typer.Option("--signing-key", help="GPG key id (0xKEYID or fingerprint) that signs what is published.")
]
PrivateKeyOption = Annotated[
    str | None,
    typer.Option(
        "--gpg-private-key",
        help="Base64 of the private key to import, or @path. Env: SLURM_FACTORY_GPG_PRIVATE_KEY.",
        show_default=False,
    ),
]
PassphraseOption = Annotated[
    str | None,
    typer.Option(
        "--gpg-passphrase", help="Passphrase of that key. Env: SLURM_FACTORY_GPG_PASSPHRASE.", show_default=False
    ),
]
PassphraseFileOption = Annotated[
    Path | None, typer.Option("--gpg-passphrase-file", help="Read the passphrase from this file.")
]
PublishUrlOption = Annotated[
    str | None,
    typer.Option(
        "--publish-url", help="Where to publish: a file:// path or directory (default: the local binary mirror), s3://."
    ),
]
S3EndpointOption = Annotated[
    str | None,
    typer.Option(
        "--s3-endpoint-url",
        help="Endpoint of an S3-compatible store (MinIO, Ceph RGW) for s3:// mirrors. Env: AWS_ENDPOINT_URL_S3, "
        "AWS_ENDPOINT_URL. Credentials: AWS_PROFILE, ~/.aws/credentials or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable result on stdout.")]
SpackSourceOption = Annotated[
    str | None,
    typer.Option("--spack-source", help="Local Spack checkout, release tarball or URL instead of cloning Spack."),
]
SpackPackagesSourceOption = Annotated[
    str | None,
    typer.Option(
        "--spack-packages-source",
        help="Local spack-packages checkout, tarball or URL instead of fetching the pinned commit.",
    ),
]
PythonWheelsOption = Annotated[
    Path | None,
    typer.Option(
        "--python-wheels", help="Directory of wheels (clingo, boto3 and their dependencies) for Spack's Python."
    ),
]
BaseImageOption = Annotated[str | None, typer.Option("--base-image", help="Override the toolchain's base image.")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Validate and print the plan; build nothing.")]
PlanDirOption = Annotated[
    Path | None, typer.Option("--plan-dir", help="Write the rendered build context into this directory.")
]


@app.command("build-slurm")
@_one_line_errors
def build_slurm_command(
    slurm_version: SlurmVersionOption = DEFAULT_SLURM_VERSION,
    toolchain: ToolchainOption = DEFAULT_TOOLCHAIN,
    gpu: Annotated[bool, typer.Option("--gpu", help="Build the NVML and RSMI GPU plugins.")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Verify relocatability and function.")] = False,
    no_cache: NoCacheOption = False,
    buildcache: Annotated[
        BuildcacheMode,
        typer.Option(
            "--buildcache", help="Install from the binary buildcache: none, deps or all.", case_sensitive=False
        ),
    ] = BuildcacheMode.NONE,
    publish: PublishOption = PublishMode.NONE,
    enable_hierarchy: Annotated[
        bool, typer.Option("--enable-hierarchy", help="Lmod Core/Compiler/MPI hierarchy instead of a flat tree.")
    ] = False,
    signing_key: SigningKeyOption = None,
    gpg_private_key: PrivateKeyOption = None,
    gpg_passphrase: PassphraseOption = None,
    gpg_passphrase_file: PassphraseFileOption = None,
    use_local_buildcache: Annotated[
        bool, typer.Option("--use-local-buildcache", help="Also use ~/.slurm-factory/spack-buildcache as a mirror.")
    ] = False,
    compiler_version: Annotated[
        str | None,
        typer.Option(
            "--compiler-version",
            help="Build with a GCC from `build-compiler` (e.g. 10.5.0).",
            autocompletion=_complete_gcc_version,
        ),
    ] = None,
    engine: Annotated[
        Engine, typer.Option("--engine", help="spack (whole stack) or native (OS libraries).", case_sensitive=False)
    ] = Engine.SPACK,
    arch: Annotated[
        Arch | None,
        typer.Option(
            "--arch",
            help="The machine the artifact runs on: amd64 or arm64 (arm64 from an x86_64 host: native engine on "
            "trixie or bookworm, by the OS's cross compiler).",
            case_sensitive=False,
            show_default="the host's",
        ),
    ] = None,
    slurm_source: Annotated[
        str | None, typer.Option("--slurm-source", help="Local path or URL of the Slurm source tarball.")
    ] = None,
    spack_source: SpackSourceOption = None,
    spack_packages_source: SpackPackagesSourceOption = None,
    python_wheels: PythonWheelsOption = None,
    base_image: BaseImageOption = None,
    buildcache_url: Annotated[
        str | None, typer.Option("--buildcache-url", help="Binary mirror to read: file://, s3://, https://.")
    ] = None,
    publish_url: PublishUrlOption = None,
    s3_endpoint_url: S3EndpointOption = None,
    os_packages: Annotated[
        OsPackagesMode | None,
        typer.Option(
            "--os-packages",
            help="Spack engine: what the toolchain OS supplies. build: build-only tools (every linked library built "
            "by Spack); all: every dependency the OS packages (the artifact needs the runtime packages its manifest "
            "lists); none: only the compiler.",
            case_sensitive=False,
            show_default="build",
        ),
    ] = None,
    spack_packages: Annotated[
        Path | None,
        typer.Option(
            "--spack-packages",
            help="Spack engine: a site packages.yaml (its MPI, UCX, libfabric as externals; preferred versions and "
            "variants) merged over the generated one.",
        ),
    ] = None,
    dry_run: DryRunOption = False,
    plan_dir: PlanDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Build one Slurm version for one toolchain."""
    from slurm_factory.builder import build

    passphrase = _passphrase(gpg_passphrase, gpg_passphrase_file)
    _warn_command_line_secrets(gpg_private_key, gpg_passphrase)
    result = build(
        slurm_version=slurm_version,
        toolchain=toolchain,
        gpu=gpu,
        verify=verify,
        no_cache=no_cache,
        buildcache=buildcache.value,
        publish=publish.value,
        enable_hierarchy=enable_hierarchy,
        signing_key=signing_key,
        gpg_private_key=gpg_private_key,
        gpg_passphrase=passphrase,
        compiler_version=compiler_version,
        use_local_buildcache=use_local_buildcache,
        settings=_settings(),
        engine=engine.value,
        arch=arch.value if arch is not None else None,
        slurm_source=slurm_source,
        spack_source=spack_source,
        spack_packages_source=spack_packages_source,
        python_wheels=str(python_wheels) if python_wheels is not None else None,
        base_image=base_image,
        buildcache_url=buildcache_url,
        publish_url=publish_url,
        s3_endpoint_url=s3_endpoint_url,
        os_packages=os_packages.value if os_packages is not None else None,
        spack_packages=str(spack_packages) if spack_packages is not None else None,
        dry_run=dry_run,
        plan_dir=plan_dir,
        display=_display(json_output),
    )
    _report_build(result, json_output, dry_run)


app.command("build", help="Alias of build-slurm.", hidden=False)(build_slurm_command)


def _report_build(result: BuildResult, json_output: bool, dry_run: bool) -> None:
    if json_output:
        typer.echo(json.dumps(result.to_json(), indent=2))
        return
    if dry_run:
        _print_plan(result.plan)
        if result.plan_dir:
            stdout.print(f"build context written to {result.plan_dir}")
        if result.preflight is not None:
            _print_preflight(result.preflight)
        return
    if result.plan_dir:
        stderr.print(f"build context written to {result.plan_dir}")
    if result.reused:
        stdout.print(f"[green]reused[/] {result.artifact} (build {result.build_id}, stored {result.stored})")
    else:
        stdout.print(f"[green]built[/] {result.artifact}")
    stdout.print(f"  sha256 {result.sha256}  size {_megabytes(result.size or 0)}")
    stdout.print(f"  log    {result.log_path}")
    if result.verification:
        from slurm_factory.verify import report_path

        checks = result.verification["checks"]
        stdout.print(
            f"  verified: {len(checks)} checks passed in {result.verification['seconds']:.0f}s; report "
            f"{report_path(result.artifact)}"
            if result.artifact
            else "",
            highlight=False,
            markup=False,
        )
    stdout.print("  " + "  ".join(f"{stage} {seconds:.0f}s" for stage, seconds in result.durations.items()))


def _print_preflight(preflight: Preflight) -> None:
    """Last, where it stays on screen: what was checked, then what the build would do."""
    stdout.rule("preflight")
    for check in preflight.checks:
        stdout.out(f"ok  {check.subject}: {check.finding}", highlight=False)
    width = max(len(name) for name in preflight.summary)
    for name, value in preflight.summary.items():
        stdout.out(f"{name:<{width}}  {value}", highlight=False)


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def _print_plan(plan: BuildPlan) -> None:
    from slurm_factory.request import without_credentials

    request = plan.request
    stdout.out(
        f"# build {plan.build_id}: Slurm {request.slurm.version} ({request.slurm.tag}) for "
        f"{request.toolchain.name}, engine {request.engine.value}{', gpu' if request.gpu else ''}",
        highlight=False,
    )
    stdout.out(
        f"# source   {without_credentials(request.slurm_source or request.slurm.url)} (sha256 {request.slurm.sha256})",
        highlight=False,
    )
    stdout.out(f"# image    {plan.image.reference} from {request.base_image}", highlight=False)
    stdout.out(f"# artifact {plan.artifact_path}", highlight=False)
    if request.engine is Engine.SPACK:
        _print_os_externals(plan)
    _print_container(plan)
    _print_context_files(plan.context_files())


def _print_os_externals(plan: BuildPlan) -> None:
    """Which Spack packages the toolchain OS supplies (`--os-packages`, minus what a site file decides)."""
    from slurm_factory.plan.spack import request_os_externals

    request = plan.request
    externals = request_os_externals(request)
    stdout.out(
        f"# os       --os-packages {request.os_packages.value}: {len(externals)} Spack packages from the OS "
        "(versions detected in the build container)",
        highlight=False,
    )
    for kind in ("build", "library", "gpu"):
        names = [f"{e.name} ({' '.join(e.os_packages)})" for e in externals if e.kind == kind]
        if names:
            stdout.out(f"# external {kind}: {', '.join(names)}", highlight=False)
    if request.spack_packages is not None:
        stdout.out(f"# site     {request.spack_packages}: {', '.join(request.site_packages)}", highlight=False)


def _print_container(plan: BuildPlan | CompilerPlan) -> None:
    """The build container's log, mounts, environment (no secret is ever in it) and steps."""
    spec = plan.container
    stdout.out(f"# log      {plan.log_path}", highlight=False)
    for mount in spec.mounts:
        stdout.out(f"# mount    {mount.host} -> {mount.container}{' (ro)' if mount.read_only else ''}", highlight=False)
    for name, value in spec.environment.items():
        stdout.out(f"# env      {name}={value}", highlight=False)
    for command in (spec.command, spec.publish_command):
        if command is not None:
            stdout.out(f"# run      {' '.join(command)}", highlight=False)


def _print_context_files(files: dict[str, PlanFile]) -> None:
    for name, plan_file in files.items():
        stdout.rule(name)
        stdout.out(plan_file.content, end="", highlight=False)


@app.command("build-compiler")
@_one_line_errors
def build_compiler_command(
    compiler_version: Annotated[
        str,
        typer.Option(
            "--compiler-version", help="GCC release to build, e.g. 13.4.0.", autocompletion=_complete_gcc_version
        ),
    ],
    toolchain: ToolchainOption = DEFAULT_TOOLCHAIN,
    no_cache: NoCacheOption = False,
    publish: PublishOption = PublishMode.NONE,
    signing_key: SigningKeyOption = None,
    gpg_private_key: PrivateKeyOption = None,
    gpg_passphrase: PassphraseOption = None,
    gpg_passphrase_file: PassphraseFileOption = None,
    publish_url: PublishUrlOption = None,
    s3_endpoint_url: S3EndpointOption = None,
    spack_source: SpackSourceOption = None,
    spack_packages_source: SpackPackagesSourceOption = None,
    python_wheels: PythonWheelsOption = None,
    base_image: BaseImageOption = None,
    dry_run: DryRunOption = False,
    plan_dir: PlanDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Build a GCC toolchain with Spack and push it to the buildcache (local by default)."""
    from slurm_factory.builder import build_compiler

    passphrase = _passphrase(gpg_passphrase, gpg_passphrase_file)
    _warn_command_line_secrets(gpg_private_key, gpg_passphrase)
    result = build_compiler(
        compiler_version=compiler_version,
        toolchain=toolchain,
        no_cache=no_cache,
        publish=publish.value,
        signing_key=signing_key,
        gpg_private_key=gpg_private_key,
        gpg_passphrase=passphrase,
        publish_url=publish_url,
        settings=_settings(),
        spack_source=spack_source,
        spack_packages_source=spack_packages_source,
        python_wheels=str(python_wheels) if python_wheels is not None else None,
        base_image=base_image,
        s3_endpoint_url=s3_endpoint_url,
        dry_run=dry_run,
        plan_dir=plan_dir,
        display=_display(json_output),
    )
    if json_output:
        typer.echo(json.dumps(result.to_json(), indent=2))
    elif dry_run:
        _print_compiler_plan(result.plan)
    else:
        stdout.print(f"[green]built[/] {result.artifact}", highlight=False)
        stdout.print(
            f"  sha256 {result.sha256}  pushed to {', '.join(result.manifest.get('pushed_to', []))}", highlight=False
        )
        stdout.print(f"  log    {result.log_path}", highlight=False, markup=False)


def _print_compiler_plan(plan: CompilerPlan) -> None:
    request = plan.request
    stdout.out(
        f"# build-compiler {plan.build_id}: GCC {request.gcc_version} for {request.toolchain.name}", highlight=False
    )
    stdout.out(f"# image    {plan.image.reference} from {request.base_image}", highlight=False)
    stdout.out(f"# artifact {plan.artifact_path}", highlight=False)
    _print_container(plan)
    _print_context_files(plan.context_files())


@app.command("clean")
@_one_line_errors
def clean_command(
    full: Annotated[bool, typer.Option("--full", help="Also remove this project's images and volumes.")] = False,
    builds: Annotated[
        bool,
        typer.Option(
            "--builds",
            help="Instead: prune old artifacts in builds/ (never the newest, nor the only one of a request).",
        ),
    ] = False,
    keep: Annotated[int, typer.Option("--keep", help="With --builds: artifacts kept per request.", min=1)] = 1,
) -> None:
    """Remove this project's stopped containers (and with --full its images and volumes), or with --builds old
    artifacts."""
    from slurm_factory import store
    from slurm_factory.docker_layer import DockerSession

    if full and builds:
        raise ConfigurationError("--full and --builds clean different things; run them one at a time")
    if keep != 1 and not builds:
        raise ConfigurationError("--keep needs --builds: it says how many artifacts of each request stay")
    settings = _settings()
    if builds:
        removed_dirs = store.prune(settings.builds_dir, keep)
        for directory in removed_dirs:
            stdout.print(f"removed {directory}", highlight=False, markup=False)
        if not removed_dirs:
            stdout.print(f"nothing to remove: at most {keep} artifact(s) of each request in {settings.builds_dir}")
        return
    report = DockerSession(settings.project_name).clean(full=full)
    removed = [
        *(f"container {name}" for name in report.containers),
        *(f"image {name}" for name in report.images),
        *(f"volume {name}" for name in report.volumes),
        *(f"network {name}" for name in report.networks),
    ]
    for line in removed:
        stdout.print(f"removed {line}")
    for line in report.kept:
        stdout.print(f"kept    {line}")
    if not removed:
        stdout.print(f"nothing to remove for project {settings.project_name}")


@app.command("list")
@_one_line_errors
def list_command(json_output: JsonOption = False) -> None:
    """Show toolchains, Slurm releases and the artifacts in builds/."""
    from rich.table import Table

    from slurm_factory import store
    from slurm_factory.catalog import load_toolchains

    settings = _settings()
    artifacts = store.stored_artifacts(settings.builds_dir)
    keys = store.public_keys(settings.builds_dir)
    if json_output:
        typer.echo(json.dumps(_list_json([item.to_json(keys) for item in artifacts]), indent=2))
        return
    toolchains = Table(title="Toolchains")
    for column in ("toolchain", "OS", "base image", "GCC", "glibc", "native --gpu"):
        toolchains.add_column(column)
    for toolchain in load_toolchains().values():
        toolchains.add_row(
            toolchain.name,
            toolchain.os,
            toolchain.base_image,
            toolchain.gcc,
            toolchain.glibc,
            "yes" if toolchain.native.supports_gpu else "no",
        )
    stdout.print(toolchains)
    releases = Table(title="Slurm releases")
    for column in ("series", "newest", "releases"):
        releases.add_column(column)
    for series, versions in _releases_by_series().items():
        releases.add_row(series, versions[-1], ", ".join(versions))
    stdout.print(releases)
    built = Table(title=f"Artifacts in {settings.builds_dir} (* = what the name points at)")
    for column in ("artifact", "build id", "Slurm", "engine", "options", "size", "built", "verified", "signed"):
        built.add_column(column)
    for item in artifacts:
        row = item.to_json(keys)
        built.add_row(
            ("* " if item.current else "  ") + item.path.name,
            item.build_id,
            str(row["slurm_version"] or "?"),
            str(row["engine"] or "?"),
            row["options"],
            _megabytes(row["size"]),
            item.built_at or "?",
            "yes" if row["verified"] else "no",
            "yes" if row["signed"] else "no",
        )
    stdout.print(built)


def _releases_by_series() -> dict[str, list[str]]:
    from slurm_factory.catalog import load_releases

    by_series: dict[str, list[str]] = {}
    for release in load_releases():
        versions = by_series.setdefault(release.series, [])
        if release.version not in versions:
            versions.append(release.version)
    return by_series


def _list_json(artifacts: list[dict[str, Any]]) -> dict[str, Any]:
    from slurm_factory.catalog import load_releases, load_toolchains

    return {
        "toolchains": [t.model_dump(mode="json") for t in load_toolchains().values()],
        "releases": [{"version": r.version, "tag": r.tag, "sha256": r.sha256} for r in load_releases()],
        "artifacts": artifacts,
    }


@app.command("verify")
@_one_line_errors
def verify_command(
    tarball: Annotated[Path, typer.Argument(help="An artifact made by slurm-factory.")],
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", help="Check the artifact's detached .asc signature against this public key."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Verify an existing artifact: signature, static checks, relocated ldd, a two-node cluster running jobs."""
    from slurm_factory.verify import report_path, verify_artifact
    from slurm_factory.verify.artifact_reader import require_regular_file

    require_regular_file(tarball)  # before anything else looks at the path
    # builds/<name> links into the store: the report and the manifest's record belong beside the stored file.
    tarball = tarball.resolve() if tarball.is_symlink() else tarball
    signature = Path(f"{tarball}.asc")  # also for `verify .` or `/`, which have no name
    if public_key is None and signature.is_file() and not json_output:
        stderr.print(
            f"note: {signature.name} is not checked; give --public-key KEY.pub.asc to check it",
            highlight=False,
            markup=False,
        )
    try:
        report = verify_artifact(tarball, _settings(), display=_display(json_output), public_key=public_key)
    except VerificationError as error:
        _show_report(error.report_path, json_output)
        raise
    if json_output:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        report.print_summary(stdout)
        stdout.print(f"report {report_path(tarball)}", highlight=False, markup=False)


def _show_report(path: Path | None, json_output: bool) -> None:
    """On failure the report is still the evidence: print it (table, or JSON with --json)."""
    if path is None or not path.is_file():
        return
    from slurm_factory.verify.report import VerificationReport

    data = json.loads(path.read_text(encoding="utf-8"))
    if json_output:
        typer.echo(json.dumps(data, indent=2))
        return
    VerificationReport.from_json(data).print_summary(stdout)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    """Entry point of the console script and `python -m slurm_factory`. SIGTERM and SIGHUP (CI cancellation,
    `timeout`, a closed terminal) unwind like Ctrl-C, so containers, networks and keyrings are removed."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        code = app(prog_name="slurm-factory", standalone_mode=False)
    except _CLICK_ERROR as error:
        sys.exit(_usage_error(error))
    except (typer.Abort, KeyboardInterrupt):  # Ctrl-C before a command ran (parsing, imports) or while prompting
        stderr.print("interrupted", highlight=False, markup=False)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


# click's UsageError and ClickException, whichever click typer uses (its own copy in newer releases).
_USAGE_ERROR: type[Exception] = typer.BadParameter.__mro__[1]
_CLICK_ERROR: type[Exception] = typer.BadParameter.__mro__[2]


def _usage_error(error: Any) -> int:
    """click's errors as one line like ours (`error: Invalid value for '--engine': ...`), a usage error with the
    command's `--help` as the hint; no arguments at all prints the help."""
    if type(error).__name__ == "NoArgsIsHelpError":
        stdout.out(error.format_message(), highlight=False)
        return EXIT_USAGE
    stderr.print(Text("error: ", style="bold red") + Text(error.format_message()), highlight=False)
    if not isinstance(error, _USAGE_ERROR):
        return int(error.exit_code)
    context = getattr(error, "ctx", None)
    if context is not None:
        stderr.print(Text("hint: ", style="dim") + Text(f"see `{context.command_path} --help`"), highlight=False)
    return EXIT_USAGE
