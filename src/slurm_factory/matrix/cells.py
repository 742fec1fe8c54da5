"""The cells of a build matrix: one `build-slurm` request per combination of the axes, plus the `build-compiler`
cells they need, validated all at once before anything starts.

An axis is an option declared with `axis=True` in `slurm_factory.options` (Slurm version, toolchain, GPU flag,
arch); every other option applies to all cells. A cell is plain data (its kind and its `build()` keywords), so it
travels as JSON to a child process and is validated again there by the same code.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from slurm_factory.buildcache import cached_gcc
from slurm_factory.choices import Arch, BuildcacheMode, PublishMode, host_arch
from slurm_factory.config import Settings
from slurm_factory.engines import engine_for
from slurm_factory.exceptions import ConfigurationError, quoted
from slurm_factory.options import BuildOptions, declared
from slurm_factory.plan import BuildPlan, CompilerPlan, make_compiler_plan, make_plan
from slurm_factory.request import BuildRequest, make_compiler_request, make_request

CellKind = Literal["slurm", "compiler"]
# `--gpu` in a matrix: without, with, or both (two cells).
GPU_AXIS = {"no": (False,), "yes": (True,), "both": (False, True)}
# build-compiler takes these of the matrix's shared options; the rest only concern Slurm.
COMPILER_SHARED = ("no_cache", "spack_source", "spack_packages_source", "python_wheels")


@dataclass(frozen=True)
class Cell:
    """One build of the matrix: `build()` keywords (kind `slurm`) or `build_compiler()` keywords (`compiler`)."""

    name: str
    kind: CellKind
    options: Mapping[str, Any]
    # Cells that must succeed first (a GCC this cell builds with); it is skipped if one failed.
    needs: tuple[str, ...] = ()
    # Cells that only go first (they publish dependencies this cell then installs as binaries), however they end.
    after: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "options": dict(self.options),
            "needs": list(self.needs),
            "after": list(self.after),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Cell:
        kind = data["kind"]
        if kind not in ("slurm", "compiler"):
            raise ConfigurationError(f"a matrix cell of kind {quoted(kind)}: valid kinds are slurm and compiler")
        return cls(
            str(data["name"]),
            kind,
            dict(data["options"]),
            tuple(data.get("needs", ())),
            tuple(data.get("after", ())),
        )


@dataclass(frozen=True)
class PlannedCell:
    """A validated cell and the plan it will build (the plan is pure: nothing has run)."""

    cell: Cell
    plan: BuildPlan | CompilerPlan

    @property
    def name(self) -> str:
        return self.cell.name


@dataclass
class Matrix:
    """Every cell, compiler cells first, each after the cells it needs."""

    cells: list[PlannedCell] = field(default_factory=list)

    def names(self) -> list[str]:
        return [planned.name for planned in self.cells]

    def __len__(self) -> int:
        return len(self.cells)


def axis_names() -> tuple[str, ...]:
    return tuple(item.name for item in declared(BuildOptions) if item.option.axis)


def parse_axis(name: str, text: str | None) -> tuple[Any, ...] | None:
    """`--slurm-version 25.11,24.11` → ('25.11', '24.11'); `--gpu both` → (False, True). None: not given (the
    option's default is the only value). Repeated values are kept once, in their first place."""
    if text is None:
        return None
    if name == "gpu":
        if text.lower() not in GPU_AXIS:
            raise ConfigurationError(f"--gpu {quoted(text)} is invalid in a matrix; valid values: no, yes, both")
        return GPU_AXIS[text.lower()]
    values = [value.strip() for value in text.split(",")]
    if not all(values):
        flag = next(item.option.flag for item in declared(BuildOptions) if item.name == name)
        raise ConfigurationError(f"{flag} {quoted(text)}: an empty value in the list; separate values by commas")
    return tuple(dict.fromkeys(values))


def expand(axes: Mapping[str, Sequence[Any] | None], shared: Mapping[str, Any]) -> list[Cell]:
    """One `slurm` cell per combination of the axes (in the order given), each with the shared options."""
    names = axis_names()
    unknown = set(axes) - set(names)
    if unknown:
        raise ConfigurationError(f"not a matrix axis: {', '.join(sorted(unknown))}; the axes are {', '.join(names)}")
    given = [(name, values) for name in names if (values := axes.get(name)) is not None]
    cells = []
    for combination in itertools.product(*(values for _, values in given)):
        options = {**shared, **dict(zip((name for name, _ in given), combination, strict=True))}
        if options.get("emulate") and _for_this_host(options.get("arch")):
            options["emulate"] = False
        cells.append(Cell(name=_provisional_name(options), kind="slurm", options=options))
    if shared.get("emulate") and not any(cell.options["emulate"] for cell in cells):
        raise ConfigurationError(
            "--emulate builds the cells of another machine than this host under qemu, and no cell is for one",
            hint="add that arch to --arch (e.g. --arch amd64,arm64), or drop --emulate",
        )
    return cells


def _for_this_host(arch: object) -> bool:
    """A cell of the planning host's own arch (the default, or named): `--emulate`, given once for the matrix,
    concerns only the cells of another arch (`--arch amd64,arm64 --emulate` emulates the arm64 cells)."""
    host = host_arch()
    return arch is None or (host is not None and str(arch).strip().lower() == host.value)


def _provisional_name(options: Mapping[str, Any]) -> str:
    """A name for error messages before validation gives the real one (the request's flavor)."""
    parts = [str(options.get(name)) for name in ("slurm_version", "toolchain", "arch") if options.get(name)]
    return "-".join(parts) + ("-gpu" if options.get("gpu") else "") or "default"


def plan_matrix(cells: Sequence[Cell], settings: Settings) -> Matrix:
    """Validate every cell (all errors at once, exit 2), name each by its artifact, add the compiler cells the
    Slurm cells need, and order them."""
    planned: list[PlannedCell] = []
    errors: list[str] = []
    for cell in cells:
        try:
            plan = make_plan(make_request(home=settings.home, **cell.options), settings)
        except ConfigurationError as error:
            errors.append(f"cell {cell.name}: {error.message}")
            continue
        planned.append(PlannedCell(Cell(plan.request.flavor, "slurm", cell.options), plan))
    if errors:
        raise ConfigurationError(
            f"{len(errors)} of {len(cells)} matrix cells are invalid; nothing was built:\n  " + "\n  ".join(errors),
            hint="fix those options (an option given once applies to every cell), or leave the values that cannot "
            "build out of the lists",
        )
    _refuse_duplicates(planned)
    return Matrix(_after_shared_dependencies(_with_compiler_cells(planned, settings)))


def _refuse_duplicates(planned: Sequence[PlannedCell]) -> None:
    """Two cells that would write the same artifact name (`24.11` and `24.11.5`) would overwrite each other."""
    seen: dict[str, str] = {}
    for cell in planned:
        artifact = cell.plan.request.artifact_filename
        version = str(cell.cell.options.get("slurm_version"))
        if artifact in seen:
            raise ConfigurationError(
                f"--slurm-version {seen[artifact]} and {version} both make {artifact}; list each series once"
            )
        seen[artifact] = version


def _with_compiler_cells(planned: list[PlannedCell], settings: Settings) -> list[PlannedCell]:
    """A GCC that `--compiler-version` names and no mirror has yet is built once per toolchain, before the Slurm
    cells of that toolchain (which then read it from the local buildcache)."""
    compilers: dict[tuple[str, str, Arch], PlannedCell] = {}
    slurm_cells = []
    for cell in planned:
        options = cell.cell.options
        version = options.get("compiler_version")
        request = cell.plan.request
        if (
            version is None
            or options.get("buildcache_url")
            or cached_gcc(settings.buildcache_dir, version, request.arch)
        ):
            slurm_cells.append(cell)
            continue
        key = (version, request.toolchain.name, request.arch)
        if key not in compilers:
            compiler_options = {
                "compiler_version": version,
                "toolchain": request.toolchain.name,
                "arch": request.arch.value,
                **{name: options[name] for name in COMPILER_SHARED if options.get(name) is not None},
            }
            plan = make_compiler_plan(make_compiler_request(**compiler_options), settings)
            compilers[key] = PlannedCell(Cell(plan.request.artifact_root, "compiler", compiler_options), plan)
        needs = (compilers[key].name,)
        slurm_cells.append(PlannedCell(Cell(cell.name, "slurm", options, needs=needs), cell.plan))
    return [*compilers.values(), *slurm_cells]


def _publishes_what_it_reads(request: BuildRequest) -> bool:
    """A Spack cell that publishes its dependencies to the mirror it installs binaries from."""
    if not engine_for(request.engine).runs_spack or request.publish not in (PublishMode.DEPS, PublishMode.ALL):
        return False
    if request.buildcache not in (BuildcacheMode.DEPS, BuildcacheMode.ALL):
        return False
    if request.publish_url is None:  # the local binary mirror, which a cell reads unless it names another
        return request.use_local_buildcache or request.buildcache_url is None
    return request.buildcache_url is not None and request.buildcache_url.rstrip("/") == request.publish_url.rstrip("/")


def _after_shared_dependencies(cells: list[PlannedCell]) -> list[PlannedCell]:
    """Spack cells that share a mirror they publish to: within each toolchain (and arch, compiler, OS-packages mode),
    the first cell goes first, so that the others install its dependencies as binaries instead of building them at
    the same time. Only order: the others build whether it succeeded or not."""
    leaders: dict[tuple[Any, ...], str] = {}
    ordered = []
    for planned in cells:
        request = planned.plan.request
        if (
            planned.cell.kind != "slurm"
            or not isinstance(request, BuildRequest)
            or not _publishes_what_it_reads(request)
        ):
            ordered.append(planned)
            continue
        key = (request.toolchain.name, request.arch, request.compiler_version, request.os_packages)
        leader = leaders.setdefault(key, planned.name)
        if leader != planned.name:
            cell = planned.cell
            planned = PlannedCell(Cell(cell.name, cell.kind, cell.options, cell.needs, (leader,)), planned.plan)
        ordered.append(planned)
    return ordered
