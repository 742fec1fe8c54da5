"""The `slurm-factory` command line: a thin layer that maps options onto the Python API.

Errors print one line (and a hint); a traceback only with `--verbose`. Exit codes come from the exception classes.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer
import typer.core
from rich.console import Console
from rich.text import Text

from slurm_factory import __version__
from slurm_factory.completion import releases_by_series
from slurm_factory.engines import engine_for
from slurm_factory.exceptions import (
    EXIT_FAILURE,
    EXIT_USAGE,
    BuildError,
    ConfigurationError,
    SlurmFactoryError,
    VerificationError,
)
from slurm_factory.options import GROUPS, BuildOptions, CompilerOptions, Declared, declared

# Everything heavy (pydantic models, the catalog, Docker, ELF parsing) is imported inside the commands that need it,
# so `--help` and shell completion stay fast.
if TYPE_CHECKING:
    from slurm_factory.builder import BuildResult
    from slurm_factory.catalog import SlurmRelease, Toolchain
    from slurm_factory.config import Settings
    from slurm_factory.packages.build import PackageResult
    from slurm_factory.plan import BuildPlan, CompilerPlan, PackagePlan, PlanFile
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
    docker_engine = sys.modules.get("slurm_factory.docker_engine")
    started = docker_engine.DockerSession.containers_created if docker_engine is not None else 0
    return f"interrupted; the {started} container(s) of this run were removed" if started else "interrupted"


def _version_callback(*, value: bool) -> None:
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
    *,
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
    if gpg_passphrase is not None and not gpg_passphrase.startswith("@"):
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
        from slurm_factory.secret_input import read_passphrase_file

        read_passphrase_file(str(gpg_passphrase_file))  # unreadable: fails here, naming this option
        # As `@path`, read again where the build runs: a matrix cell's worker reads the file itself.
        return "@" + str(gpg_passphrase_file.expanduser().absolute())
    return gpg_passphrase


def _display(*, json_output: bool) -> Display:
    from slurm_factory.progress import RichDisplay, SilentDisplay

    if json_output or not stderr.is_terminal:
        return SilentDisplay()
    return RichDisplay(stderr)


PassphraseFileOption = Annotated[
    Path | None, typer.Option("--gpg-passphrase-file", help="Read the passphrase from this file.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable result on stdout.")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Validate and print the plan; build nothing.")]
PlanDirOption = Annotated[
    Path | None,
    typer.Option(
        "--plan-dir", help="Write the rendered build context into this directory (without --dry-run, it still builds)."
    ),
]


def _cli_parameter(item: Declared) -> inspect.Parameter:
    """A declared option as a typer parameter: a flag, a choice (case-insensitive), a path or a string."""
    option = item.option
    python_type: Any
    default: Any
    if item.is_flag:
        python_type, default = bool, bool(option.default)
    elif option.multiple:
        python_type, default = (list[Path] | None) if option.path else (list[str] | None), None
    elif option.choices is not None:
        python_type = option.choices if option.default is not None else option.choices | None
        default = option.choices(option.default) if option.default is not None else None
    elif option.path and not option.url:
        python_type, default = Path | None, None
    else:
        python_type = str if option.required or option.default is not None else str | None
        default = option.default
    show_default: bool | str = True if option.default_text is None else (option.default_text or False)
    typer_option = typer.Option(
        option.flag,
        help=option.help,
        autocompletion=option.complete,
        case_sensitive=option.choices is None,
        show_default=show_default,
    )
    return inspect.Parameter(
        item.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=inspect.Parameter.empty if option.required else default,
        annotation=Annotated[python_type, typer_option],
    )


def _extra_parameter(name: str, annotation: Any, *, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


# What every build command takes beside its declared options.
_RUN_PARAMETERS = (
    _extra_parameter("gpg_passphrase_file", PassphraseFileOption, default=None),
    _extra_parameter("dry_run", DryRunOption, default=False),
    _extra_parameter("plan_dir", PlanDirOption, default=None),
    _extra_parameter("json_output", JsonOption, default=False),
)


def _api_value(value: Any) -> Any:
    """What the Python API takes: an enum's value, a path as a string."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return [_api_value(element) for element in value] or None
    return value


def _declared_command(
    options: type, extra: tuple[inspect.Parameter, ...], run: Callable[[dict[str, Any], dict[str, Any]], None]
) -> Callable[..., None]:
    """A command whose parameters are the declared options (then `extra`): `run(api_options, extra_values)`."""
    names = [item.name for item in declared(options)]

    def command(**values: Any) -> None:
        run(
            {name: _api_value(values[name]) for name in names},
            {name: value for name, value in values.items() if name not in names},
        )

    command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [*(_cli_parameter(item) for item in declared(options)), *extra]
    )
    return command


def _secret_options(api_options: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`--gpg-passphrase-file` becomes the passphrase; secrets given on the command line are warned about."""
    passphrase = _passphrase(api_options.get("gpg_passphrase"), extra.pop("gpg_passphrase_file", None))
    _warn_command_line_secrets(api_options.get("gpg_private_key"), api_options.get("gpg_passphrase"))
    return {**api_options, "gpg_passphrase": passphrase}


def _run_build_slurm(api_options: dict[str, Any], extra: dict[str, Any]) -> None:
    from slurm_factory.builder import build

    options = _secret_options(api_options, extra)
    json_output, dry_run = extra["json_output"], extra["dry_run"]
    result = build(
        **options,
        settings=_settings(),
        dry_run=dry_run,
        plan_dir=extra["plan_dir"],
        display=_display(json_output=json_output),
    )
    _report_build(result, json_output=json_output, dry_run=dry_run)


# Where the options a command adds besides its declared ones are listed in `--help`.
_EXTRA_GROUPS = {"gpg_passphrase_file": "Signing", "dry_run": "Output", "plan_dir": "Output", "json_output": "Output"}


class GroupedCommand(typer.core.TyperCommand):
    """Plain `--help` (fast: no Rich), its options in the sections of `options.GROUPS` instead of one long list."""

    declaration: type = BuildOptions

    # The context and formatter are those of the Click that typer brings (its own copy).
    def format_options(self, ctx: Any, formatter: Any) -> None:
        groups = {item.name: item.option.group for item in declared(self.declaration)}
        sections: dict[str, list[tuple[str, str]]] = {name: [] for name in (*GROUPS, "Other")}
        for parameter in self.get_params(ctx):
            record = parameter.get_help_record(ctx)
            if record is None:
                continue
            name = parameter.name or ""
            sections[groups.get(name) or _EXTRA_GROUPS.get(name) or "Other"].append(record)
        for title, records in sections.items():
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)


build_slurm_command = _one_line_errors(_declared_command(BuildOptions, _RUN_PARAMETERS, _run_build_slurm))
app.command("build-slurm", help="Build one Slurm version for one toolchain.", cls=GroupedCommand)(build_slurm_command)
app.command("build", help="Alias of build-slurm.", hidden=False, cls=GroupedCommand)(build_slurm_command)


def _report_build(result: BuildResult, *, json_output: bool, dry_run: bool) -> None:
    if json_output:
        typer.echo(json.dumps(result.to_json(), indent=2))
        return
    if dry_run:
        _print_request_plan(result.plan, result.package_plan)
        _print_dry_run_end(result.plan_dir, result.preflight)
        return
    if result.plan_dir:
        stderr.print(f"build context written to {result.plan_dir}")
    if result.artifact is not None:
        _report_tarball(result)
    if result.packages is not None:
        _report_packages(result.packages)


def _report_packages(packages: PackageResult) -> None:
    verb = "reused" if packages.reused else "built"
    stdout.print(f"[green]{verb}[/] {packages.link} ({len(packages.package_set.files)} .{packages.plan.kind} packages, "
                 f"{packages.plan.version}, {_megabytes(packages.package_set.size)})", highlight=False)  # fmt: skip
    lintian = packages.package_set.manifest.get("lintian", {})
    tags = ", ".join(f"{count} {severity}" for severity, count in sorted(lintian.items())) or "no tags"
    stdout.print(f"  lintian {tags} (E errors, W warnings, O overridden with a reason, I information)", highlight=False)
    stdout.print(f"  log    {packages.log_path}", highlight=False)
    if packages.publication is not None:
        stdout.print(f"  apt    {packages.publication.source_line}", highlight=False, markup=False)
        stdout.print(f"  key    {packages.publication.public_key} (install it as the signed-by file)",
                     highlight=False)  # fmt: skip
    if packages.verification is not None:
        checks = packages.verification["checks"]
        stdout.print(f"  verified: {len(checks)} checks passed; report {packages.package_set.directory}/verify.json",
                     highlight=False, markup=False)  # fmt: skip
    stdout.print("  " + "  ".join(f"{stage} {seconds:.0f}s" for stage, seconds in packages.durations.items()))


def _report_tarball(result: BuildResult) -> None:
    if result.reused:
        stdout.print(f"[green]reused[/] {result.artifact} (build {result.build_id}, stored {result.stored})")
    else:
        stdout.print(f"[green]built[/] {result.artifact}")
    stdout.print(f"  sha256 {result.sha256}  size {_megabytes(result.size or 0)}")
    if result.debug_symbols:
        stdout.print(f"  debug  {result.debug_symbols} (unpack over the tree for gdb)", highlight=False)
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


def _print_dry_run_end(plan_dir: Path | None, preflight: Preflight | None) -> None:
    if plan_dir:
        stdout.print(f"build context written to {plan_dir}")
    if preflight is not None:
        _print_preflight(preflight)


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


def _print_request_plan(plan: BuildPlan, package_plan: PackagePlan | None) -> None:
    """`--dry-run`: the tarball's plan when it is built, the package build's when packages are, then every file
    as `--plan-dir` writes it."""
    from slurm_factory.plan import request_context_files

    if plan.request.builds_tarball:
        _print_plan(plan)
    if package_plan is not None:
        _print_package_plan(package_plan)
    _print_context_files(request_context_files(plan, package_plan))


def _print_package_plan(plan: PackagePlan) -> None:
    from slurm_factory.preflight import arch_summary

    request = plan.request
    stdout.out(
        f"# packages {plan.build_id}: {plan.artifact_root} (.{plan.kind}) for {request.toolchain.name} "
        f"{arch_summary(request)}{', gpu' if request.gpu else ''}",
        highlight=False,
    )
    stdout.out(f"# image    {plan.image.reference} FROM {plan.toolchain_image.reference}", highlight=False)
    stdout.out(f"# store    {plan.artifact_path}", highlight=False)
    _print_container(plan)


def _print_plan(plan: BuildPlan) -> None:
    """The tarball build's plan (without its files)."""
    from slurm_factory.preflight import arch_summary, image_summary
    from slurm_factory.request import without_credentials

    request = plan.request
    stdout.out(
        f"# build {plan.build_id}: Slurm {request.slurm.version} ({request.slurm.tag}) for "
        f"{request.toolchain.name} {arch_summary(request)}, engine {request.engine.value}"
        f"{', gpu' if request.gpu else ''}",
        highlight=False,
    )
    stdout.out(
        f"# source   {without_credentials(request.slurm_source or request.slurm.url)} (sha256 {request.slurm.sha256})",
        highlight=False,
    )
    stdout.out(f"# image    {image_summary(plan)}", highlight=False)
    stdout.out(f"# artifact {plan.artifact_path}", highlight=False)
    if engine_for(request.engine).chooses_os_packages:
        _print_os_externals(plan)
    _print_container(plan)


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


def _print_container(plan: BuildPlan | CompilerPlan | PackagePlan) -> None:
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
    """Each file byte for byte (Rich would expand the tabs of patches and Makefile lines)."""
    for name, plan_file in files.items():
        stdout.rule(name)
        stdout.file.write(plan_file.content)
        stdout.file.flush()


def _run_build_compiler(api_options: dict[str, Any], extra: dict[str, Any]) -> None:
    from slurm_factory.builder import build_compiler

    options = _secret_options(api_options, extra)
    json_output, dry_run = extra["json_output"], extra["dry_run"]
    result = build_compiler(
        **options,
        settings=_settings(),
        dry_run=dry_run,
        plan_dir=extra["plan_dir"],
        display=_display(json_output=json_output),
    )
    if json_output:
        typer.echo(json.dumps(result.to_json(), indent=2))
    elif dry_run:
        _print_compiler_plan(result.plan)
        _print_dry_run_end(result.plan_dir, result.preflight)
    else:
        stdout.print(f"[green]built[/] {result.artifact}", highlight=False)
        stdout.print(
            f"  sha256 {result.sha256}  pushed to {', '.join(result.manifest.get('pushed_to', []))}", highlight=False
        )
        stdout.print(f"  log    {result.log_path}", highlight=False, markup=False)


_BUILD_COMPILER_HELP = "Build a GCC toolchain with Spack and push it to the buildcache (local by default)."
build_compiler_command = _one_line_errors(_declared_command(CompilerOptions, _RUN_PARAMETERS, _run_build_compiler))


class _CompilerCommand(GroupedCommand):
    declaration = CompilerOptions


app.command("build-compiler", help=_BUILD_COMPILER_HELP, cls=_CompilerCommand)(build_compiler_command)


def _matrix_parameter(item: Declared) -> inspect.Parameter:
    """An axis takes a comma-separated list (`--gpu` takes no, yes or both); every other option is as in
    build-slurm and applies to all cells."""
    option = item.option
    if not option.axis:
        return _cli_parameter(item)
    if item.is_flag:
        typer_option = typer.Option(option.flag, help=f"{option.help} In a matrix: no, yes or both (two cells).")
        return _extra_parameter(item.name, Annotated[str, typer_option], default="no")
    shown = option.default_text or option.default
    typer_option = typer.Option(
        option.flag,
        help=f"{option.help} A comma-separated list: one cell per value.",
        autocompletion=option.complete,
        show_default=str(shown) if shown else False,
    )
    return _extra_parameter(item.name, Annotated[str | None, typer_option], default=None)


_MATRIX_PARAMETERS = (
    _extra_parameter("gpg_passphrase_file", PassphraseFileOption, default=None),
    _extra_parameter(
        "jobs",
        Annotated[
            int | None,
            typer.Option(
                "--jobs",
                "-j",
                help="Cells built at once on this host's Docker engine (default 1); with --scheduler, cells sent to "
                "the cluster at once (default: all that are ready).",
                min=1,
                show_default=False,
            ),
        ],
        default=None,
    ),
    _extra_parameter(
        "scheduler",
        Annotated[
            str | None,
            typer.Option(
                "--scheduler",
                help="Build the cells on a Dask cluster: tcp://HOST:PORT (or tls://) of its scheduler. Each worker "
                "builds with its own Docker engine; artifacts come back to builds/. Extra: slurm-factory[distributed].",
            ),
        ],
        default=None,
    ),
    _extra_parameter(
        "dry_run", Annotated[bool, typer.Option("--dry-run", help="List the cells and their plans.")], default=False
    ),
    _extra_parameter("json_output", JsonOption, default=False),
)


def _run_build_matrix(options: dict[str, Any], extra: dict[str, Any]) -> None:
    from slurm_factory.matrix.cells import axis_names, expand, parse_axis
    from slurm_factory.matrix.run import build_matrix
    from slurm_factory.matrix.table import LiveTable, print_summary

    options = _secret_options(options, extra)
    axes = {name: parse_axis(name, options.pop(name)) for name in axis_names()}
    shared = {name: value for name, value in options.items() if value is not None and value is not False}
    cells = expand(axes, shared)
    json_output, dry_run = extra["json_output"], extra["dry_run"]
    settings = _settings()
    if dry_run or json_output or not stderr.is_terminal:
        result = build_matrix(
            cells, settings=settings, jobs=extra["jobs"], scheduler=extra["scheduler"], dry_run=dry_run
        )
    else:
        from slurm_factory.matrix.cells import plan_matrix

        with LiveTable(stderr, plan_matrix(cells, settings)) as table:
            result = build_matrix(
                cells, settings=settings, jobs=extra["jobs"], scheduler=extra["scheduler"], listener=table
            )
    if json_output:
        typer.echo(json.dumps(result.to_json(), indent=2))
    elif dry_run:
        _print_matrix_plan(result)
    else:
        print_summary(stdout, result.outcomes, result.seconds)
        stdout.print(f"cell logs: {result.logs}", highlight=False, markup=False)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _print_matrix_plan(result: Any) -> None:
    for planned in result.matrix.cells:
        plan = planned.plan
        first = (*planned.cell.needs, *planned.cell.after)
        needs = f"  after {', '.join(first)}" if first else ""
        stdout.out(f"{planned.name}  ({planned.cell.kind}, build {plan.build_id}){needs}", highlight=False)
        stdout.out(f"  image    {plan.image.reference} from {plan.request.base_image}", highlight=False)
        stdout.out(f"  artifact {plan.artifact_path}", highlight=False)
    where = f"on the Dask cluster at {result.scheduler}" if result.scheduler else "on this host"
    stdout.out(f"{len(result.matrix)} cells, {result.jobs} at once {where}", highlight=False)


def _matrix_command() -> Callable[..., None]:
    command = _declared_command(BuildOptions, _MATRIX_PARAMETERS, _run_build_matrix)
    command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [*(_matrix_parameter(item) for item in declared(BuildOptions)), *_MATRIX_PARAMETERS]
    )
    return command


build_matrix_command = _one_line_errors(_matrix_command())
app.command(
    "build-matrix",
    help="Build every combination of Slurm versions, toolchains, GPU flag and arches (comma-separated lists), "
    "--jobs at once on this host or on a Dask cluster (--scheduler). Exit 0 when every cell succeeds, 1 when any "
    "failed.",
    cls=GroupedCommand,
)(build_matrix_command)


def _print_compiler_plan(plan: CompilerPlan) -> None:
    from slurm_factory.preflight import arch_summary, image_summary

    request = plan.request
    stdout.out(
        f"# build-compiler {plan.build_id}: GCC {request.gcc_version} for {request.toolchain.name} "
        f"{arch_summary(request)}",
        highlight=False,
    )
    stdout.out(f"# image    {image_summary(plan)}", highlight=False)
    stdout.out(f"# artifact {plan.artifact_path}", highlight=False)
    _print_container(plan)
    _print_context_files(plan.context_files())


@app.command("cell", hidden=True)
def cell_command() -> None:
    """A matrix cell (JSON on standard input; JSON lines of its progress and result on standard output)."""
    from slurm_factory.matrix.cell_process import EventDisplay, die_with_parent, serve_cell

    if not die_with_parent():
        raise typer.Exit(EXIT_INTERRUPTED)
    events = EventDisplay(sys.stdout)
    try:
        code = serve_cell(sys.stdin, events, _settings())
    except KeyboardInterrupt:
        events.emit({"event": "error", "kind": "Interrupted", "exit_code": EXIT_INTERRUPTED, "message": "interrupted"})
        code = EXIT_INTERRUPTED
    except SlurmFactoryError as error:  # the settings
        from slurm_factory.matrix.cell_process import error_event

        events.emit(error_event(error))
        code = error.exit_code
    raise typer.Exit(code)


@app.command("clean")
@_one_line_errors
def clean_command(
    *,
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
    from slurm_factory.docker_engine import DockerSession

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
def list_command(*, json_output: JsonOption = False) -> None:
    """Show toolchains, Slurm releases and the artifacts in builds/."""
    from rich.table import Table

    from slurm_factory import store
    from slurm_factory.catalog import load_toolchains
    from slurm_factory.catalog.releases import merged_releases
    from slurm_factory.packages.store import stored_sets, verified
    from slurm_factory.request import site_releases

    settings = _settings()
    # A site's releases file is read (and its errors reported) as a build would: `list` is how to check it.
    releases = merged_releases(site_releases(settings.home))
    artifacts = store.stored_artifacts(settings.builds_dir)
    package_sets = stored_sets(settings.builds_dir)
    keys = store.public_keys(settings.builds_dir)
    if json_output:
        listing = _list_json([item.to_json(keys) for item in artifacts], releases)
        listing["package_sets"] = [
            {**package_set.to_json(), "kind": "deb", "current": current, "verified": verified(package_set)}
            for package_set, current in package_sets
        ]
        typer.echo(json.dumps(listing, indent=2))
        return
    toolchains = Table(
        title="Toolchains",
        caption="gpu: the native engine builds --gpu; arm64: --arch arm64 on an amd64 host is cross-compiled (the "
        "native engine; Spack is emulated) or emulated (qemu)",
    )
    for column in ("toolchain", "OS", "base image", "GCC", "glibc", "gpu", "arm64"):
        toolchains.add_column(column, no_wrap=column in ("toolchain", "OS"))
    for toolchain in load_toolchains().values():
        toolchains.add_row(
            toolchain.name,
            toolchain.os,
            toolchain.base_image,
            toolchain.gcc,
            toolchain.glibc,
            "yes" if toolchain.native.supports_gpu else "no",
            _arm64_support(toolchain),
        )
    stdout.print(toolchains)
    site = sorted({release.origin for release in releases if release.origin != "catalog"})
    table = Table(
        title="Slurm releases",
        caption="each with SchedMD's sha256 in `list --json`" + (f"; from {', '.join(site)} too" if site else ""),
    )
    for column in ("series", "newest", "releases"):
        table.add_column(column)
    for series, versions in releases_by_series(releases).items():
        table.add_row(series, versions[-1], ", ".join(versions))
    stdout.print(table)
    built = Table(title=f"Artifacts in {settings.builds_dir} (* = what the name points at)")
    for column in ("artifact", "kind", "build id", "Slurm", "engine", "options", "size", "built", "verified", "signed"):
        built.add_column(column, no_wrap=column == "artifact")
    for item in artifacts:
        row = item.to_json(keys)
        built.add_row(
            ("* " if item.current else "  ") + item.path.name,
            "tarball",
            item.build_id,
            str(row["slurm_version"] or "?"),
            str(row["engine"] or "?"),
            row["options"],
            _megabytes(row["size"])
            + (f" +{row['debug_symbols']['size'] / 1e6:.1f} debug" if row["debug_symbols"] else ""),
            item.built_at or "?",
            "yes" if row["verified"] else "no",
            "yes" if row["signed"] else "no",
        )
    for package_set, current in package_sets:
        manifest = package_set.manifest
        built.add_row(
            ("* " if current else "  ") + f"packages/{package_set.directory.name}",
            f"deb ({len(package_set.files)})",
            str(manifest.get("build_id", "?")),
            f"{manifest.get('slurm_version', '?')} ({package_set.version})",
            "native",
            str(manifest.get("toolchain", "?")),
            _megabytes(package_set.size),
            str(manifest.get("built_at", "?")),
            "yes" if verified(package_set) else "no",
            "-",  # .deb files are not signed one by one: the apt repository's Release is
        )
    stdout.print(built)


def _arm64_support(toolchain: Toolchain) -> str:
    """How `--arch arm64` builds on an amd64 host: `cross` (the native engine by the OS's cross compiler; Spack,
    and `--emulate`, under qemu) or `emulated` (every engine under qemu)."""
    support = toolchain.arches.get("arm64")
    if support is None:
        return "no"
    cross_engines = [name for name in support.engines if engine_for(name).cross_compiles]
    return "cross" if support.cross and cross_engines else "emulated"


def _list_json(artifacts: list[dict[str, Any]], releases: Sequence[SlurmRelease]) -> dict[str, Any]:
    from slurm_factory.catalog import load_toolchains

    return {
        "toolchains": [t.model_dump(mode="json") for t in load_toolchains().values()],
        "releases": [
            {"version": r.version, "tag": r.tag, "sha256": r.sha256, "date": r.date.isoformat(), "origin": r.origin}
            for r in releases
        ],
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
    upgrade_from: Annotated[
        Path | None,
        typer.Option(
            "--upgrade-from",
            help="An older release's artifact (same toolchain): the cluster runs it first, then is upgraded in place "
            "to TARBALL, keeping its state and database. Only upgrades Slurm supports.",
        ),
    ] = None,
    *,
    json_output: JsonOption = False,
) -> None:
    """Verify an existing artifact: signature, static checks, relocated ldd, and a production-shaped cluster
    (MariaDB + slurmdbd, configless node, login node, accounting, REST over JWT) started from its own units."""
    from slurm_factory.verify import report_path, verify_artifact
    from slurm_factory.verify.artifact_reader import require_regular_file

    require_regular_file(tarball)  # before anything else looks at the path
    if upgrade_from is not None:
        require_regular_file(upgrade_from)
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
        report = verify_artifact(
            tarball,
            _settings(),
            display=_display(json_output=json_output),
            public_key=public_key,
            upgrade_from=upgrade_from,
        )
    except VerificationError as error:
        _show_report(error.report_path, json_output=json_output)
        raise
    if json_output:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        report.print_summary(stdout)
        stdout.print(f"report {report_path(tarball)}", highlight=False, markup=False)


def _show_report(path: Path | None, *, json_output: bool) -> None:
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
