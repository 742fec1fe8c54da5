"""Files every artifact carries besides the installed tree, whatever engine built it.

The Lmod modulefile, example configuration, systemd unit templates and the setup script that renders them for the
directory the tree was unpacked into. `@SLURM_ROOT@` placeholders are filled in on the target host, since the root
is only known there.
"""

from __future__ import annotations

from slurm_factory import __version__
from slurm_factory.catalog.compilers import load_gcc_catalog
from slurm_factory.plan.model import PlanFile
from slurm_factory.plan.templating import render
from slurm_factory.request import BuildRequest, CompilerRequest

SYSTEMD_UNITS = ("slurmctld", "slurmd", "slurmdbd", "slurmrestd", "sackd")
EXAMPLE_CONFIGS = ("slurm.conf", "cgroup.conf", "slurmdbd.conf")
SETUP_SCRIPT = "sbin/slurm-factory-setup"
UNIT_TEMPLATES = "share/slurm-factory/systemd"
SYSTEM_TEMPLATES = {
    "share/slurm-factory/tmpfiles.d/slurm.conf.in": "artifact/system/tmpfiles.conf.j2",
    "share/slurm-factory/logrotate.d/slurm.in": "artifact/system/logrotate.j2",
}


def render_logrotate(context: dict[str, object]) -> str:
    """The logrotate file the tarball ships (`SYSTEM_TEMPLATES`), rendered for the packages' /etc/logrotate.d."""
    return render(SYSTEM_TEMPLATES["share/slurm-factory/logrotate.d/slurm.in"], **context)


def modulefile_path(request: BuildRequest) -> str:
    return f"modules/slurm/{request.slurm.version}.lua"


def artifact_context(request: BuildRequest, *, packaged: bool) -> dict[str, object]:
    """What the shared templates (units, example configuration, logrotate) are rendered with; `packaged`: for the
    native packages' FHS layout instead of a relocatable tree."""
    return {
        "slurm": request.slurm,
        "toolchain": request.toolchain,
        "engine": request.engine.value,
        "gpu": request.gpu,
        "tool_version": __version__,
        "packaged": packaged,
    }


def render_example_config(name: str, context: dict[str, object]) -> str:
    return render(f"artifact/etc/{name}.example.j2", **context)


def render_unit(unit: str, context: dict[str, object]) -> str:
    return render(f"artifact/systemd/{unit}.service.j2", **context)


def render_artifact_files(request: BuildRequest) -> dict[str, PlanFile]:
    """Paths relative to the artifact root → rendered files."""
    context = artifact_context(request, packaged=False)
    files = {
        modulefile_path(request): PlanFile(render("artifact/modules/slurm.lua.j2", **context)),
        SETUP_SCRIPT: PlanFile(render("artifact/sbin/slurm-factory-setup.j2", **context), mode=0o755),
    }
    for name in EXAMPLE_CONFIGS:
        files[f"etc/{name}.example"] = PlanFile(render_example_config(name, context))
    for unit in SYSTEMD_UNITS:
        files[f"{UNIT_TEMPLATES}/{unit}.service.in"] = PlanFile(render_unit(unit, context))
    for path, template in SYSTEM_TEMPLATES.items():
        files[path] = PlanFile(render(template, **context))
    return files


def render_compiler_artifact_files(request: CompilerRequest) -> dict[str, PlanFile]:
    """The compiler tarball's modulefile (`modules/gcc/<version>.lua`)."""
    modulefile = render(
        "artifact/modules/gcc.lua.j2",
        gcc_version=request.gcc_version,
        toolchain=request.toolchain,
        languages=load_gcc_catalog().languages,
        tool_version=__version__,
    )
    return {f"modules/gcc/{request.gcc_version}.lua": PlanFile(modulefile)}
