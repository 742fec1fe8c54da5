"""Build engines: one module per engine (`native`, `spack`) behind one interface, `BuildEngine`.

An engine says what a request for it must satisfy (which options it can honour, whether it cross-compiles, what
`--os-packages` means for it), renders its plan, names the manifest fields only it has, and says whether publishing
happens inside its build container. The request, the artifact, the builder and the matrix ask `engine_for(kind)`
instead of branching on the engine's name; adding an engine is one module and one line in `_MODULES`.

The modules are imported when first asked for: an engine renders plans, and the plan layer imports the request
layer, which asks the engines its questions.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

from slurm_factory.choices import Engine, OsPackagesMode, PublishMode
from slurm_factory.exceptions import ConfigurationError

if TYPE_CHECKING:
    from slurm_factory.catalog import Toolchain
    from slurm_factory.config import Settings
    from slurm_factory.plan.model import BuildPlan
    from slurm_factory.request import BuildRequest

_MODULES = {Engine.NATIVE: "slurm_factory.engines.native", Engine.SPACK: "slurm_factory.engines.spack"}


class BuildEngine(ABC):
    """What differs between engines; everything else about a build is the same for all of them."""

    kind: ClassVar[Engine]
    # Spack's inputs (--spack-source, --spack-packages-source, --python-wheels, --spack-packages), its binary
    # buildcache (--buildcache, --use-local-buildcache, --publish deps), --compiler-version, --enable-hierarchy.
    runs_spack: ClassVar[bool]
    # Builds another arch with the OS's cross toolchain where the catalog has one (else inside the arch's image).
    cross_compiles: ClassVar[bool]
    # `--os-packages`: the default, and whether the option means anything to this engine.
    default_os_packages: ClassVar[OsPackagesMode]
    chooses_os_packages: ClassVar[bool]
    # The publish modes that add the tarball to the mirror (the others push only what the container pushes).
    tarball_publish_modes: ClassVar[frozenset[PublishMode]]
    # Builds the toolchain OS's native packages (`--package deb|all`): only an engine that links the OS's libraries.
    builds_native_packages: ClassVar[bool] = False
    # Why an option of `runs_spack` is refused, after "--X needs the Spack engine; the <kind> engine ".
    without_spack: ClassVar[str] = ""

    # --- the request -------------------------------------------------------------------------------------------

    def refuse_spack_option(self, option: str, *, why: str | None = None) -> None:
        """An option only a Spack engine honours is refused (exit 2), not accepted and dropped."""
        if not self.runs_spack:
            raise ConfigurationError(
                f"{option} needs the Spack engine; the {self.kind.value} engine {why or self.without_spack}",
                hint="drop the option or use --engine spack",
            )

    @abstractmethod
    def supports_gpu(self, toolchain: Toolchain) -> bool:
        """Whether `--gpu` builds on `toolchain` with this engine."""

    # --- the plan ----------------------------------------------------------------------------------------------

    @abstractmethod
    def plan(self, request: BuildRequest, settings: Settings) -> BuildPlan:
        """The request rendered: image, container, build files, artifact files, identity."""

    # --- the artifact ------------------------------------------------------------------------------------------

    def build_paths(self, plan: BuildPlan) -> list[str]:
        """Every container path a relocated tree must not name (the install prefix, and the engine's own)."""
        return [str(plan.container.install_prefix)]

    @abstractmethod
    def runtime_packages(
        self, request: BuildRequest, meta: dict[str, str], externals: list[dict[str, Any]]
    ) -> set[str]:
        """OS packages the tree needs beyond the libraries it links (found from the ELF files)."""

    @abstractmethod
    def manifest_fields(self, request: BuildRequest) -> dict[str, Any]:
        """The manifest's engine-specific fields (None where they do not apply, so every manifest has them)."""

    # --- publishing --------------------------------------------------------------------------------------------

    @abstractmethod
    def publishes_in_container(self, request: BuildRequest) -> bool:
        """Whether a publish step runs inside the build container (it then needs its secrets handed in there,
        and the result cannot be answered from the store: the push needs the install tree)."""

    def publishes_tarball(self, publish: PublishMode) -> bool:
        return publish in self.tarball_publish_modes

    @abstractmethod
    def describe(self, request: BuildRequest) -> str:
        """The engine as the dry run's summary names it."""


@cache
def engine_for(kind: Engine | str) -> BuildEngine:
    """The engine of `kind` (an `Engine` or its value)."""
    module = importlib.import_module(_MODULES[Engine(kind)])
    engine: BuildEngine = module.ENGINE
    return engine


def engine_kinds() -> tuple[Engine, ...]:
    return tuple(_MODULES)
