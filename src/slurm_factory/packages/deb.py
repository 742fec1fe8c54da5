"""The plan of `--package deb`: the `debian/` directory, the build script and the packaging image, rendered from the
same request as the tarball (its configure options, flags, patches and contribs), for the FHS layout.

Pure: nothing here touches Docker or the disk beyond the package's templates and data.
"""

from __future__ import annotations

import email.utils
import textwrap
from dataclasses import dataclass
from importlib import resources
from pathlib import PurePosixPath

from slurm_factory import __version__
from slurm_factory.catalog.build import load_build_catalog
from slurm_factory.catalog.deb_packages import DebPackage, load_deb_packages
from slurm_factory.catalog.toolchains import multiarch_triplet
from slurm_factory.config import Settings
from slurm_factory.engines import engine_for
from slurm_factory.packages.versions import debian_version
from slurm_factory.patches import PATCH_ARGUMENTS
from slurm_factory.plan import compile_container, image_spec, inputs_id, layout, native
from slurm_factory.plan.artifact_files import (
    EXAMPLE_CONFIGS,
    artifact_context,
    render_example_config,
    render_logrotate,
    render_unit,
)
from slurm_factory.plan.model import ImageSpec, PackagePlan, PlanFile
from slurm_factory.plan.templating import render
from slurm_factory.request import BuildRequest

BUILD_SCRIPT = "build-deb.sh"
DEBIAN_TEMPLATES = "packages/deb/debian"
# Where the package set is written in the container (what is copied out).
OUTPUT_DIR = PurePosixPath("/build/packages")
# What builds, checks and indexes .deb packages (apt-utils: apt-ftparchive, for the repository; chrpath: the Perl
# modules' build-tree RUNPATH is removed).
PACKAGING_TOOLS = ("debhelper", "dpkg-dev", "fakeroot", "lintian", "apt-utils", "chrpath")
# debian/control and debian/changelog lines (lintian: at most 80 columns).
LINE_WIDTH = 79
CONF_DIR = "/etc/slurm"
SLURM_CONF = f"{CONF_DIR}/slurm.conf"
# The package that ships the example configuration and the logrotate file (debian/<package>.examples, .logrotate).
MAIN_PACKAGE = "slurm-smd"
# The rendered files of debian/ (every other file there is shipped as it is).
RENDERED = ("control", "rules", "changelog")
# What `--gpu` adds that links a GPU vendor's library (dlopened from the node's driver, as for the tarball): these
# plugins are left out of dpkg-shlibdeps, so the driver's library is no dependency.
GPU_PLUGINS = ("gpu_nvml.so", "gpu_rsmi.so")


@dataclass(frozen=True)
class SystemdUnit:
    package: str
    name: str


def package_install_dirs(request: BuildRequest) -> native.InstallDirs:
    """The FHS layout: programs in /usr, libraries and plugins in the multiarch directory, units where systemd
    looks for a package's, PAM modules where the OS keeps its own."""
    libdir = f"/usr/lib/{multiarch_triplet(request.arch.value)}"
    return native.InstallDirs(
        prefix="/usr",
        pam_dir=f"{libdir}/security",
        extra=(f"--libdir={libdir}", "--with-systemdsystemunitdir=/usr/lib/systemd/system"),
    )


def package_maintainer(request: BuildRequest) -> str:
    """`--package-maintainer`, else the catalog's placeholder address."""
    return request.package_maintainer or load_deb_packages().maintainer


def package_version(request: BuildRequest) -> str:
    return debian_version(request.slurm, release=request.package_release, codename=request.toolchain.codename)


def units() -> list[SystemdUnit]:
    return [SystemdUnit(package.name, unit) for package in load_deb_packages().packages for unit in package.units]


def description_lines(package: DebPackage) -> list[str]:
    """The extended description, its paragraphs wrapped for debian/control ("" separates paragraphs)."""
    lines: list[str] = []
    paragraph: list[str] = []
    for entry in (*package.description, ""):
        if entry:
            paragraph.append(entry)
            continue
        if paragraph:
            lines += [*textwrap.wrap(" ".join(paragraph), LINE_WIDTH - 1), ""]
            paragraph = []
    return lines[:-1]


def changelog_entries(request: BuildRequest) -> list[str]:
    """debian/changelog's items, each wrapped below its `* `."""
    items = [
        f"Slurm {request.slurm.version} (SchedMD tag {request.slurm.tag}) for {request.toolchain.os}, built by "
        f"slurm-factory {__version__}."
    ]
    items += [f"Patch {patch.name} ({patch.origin}), sha256 {patch.sha256[:16]}." for patch in request.patches]
    lines = []
    for item in items:
        wrapped = textwrap.wrap(item, LINE_WIDTH - 4)
        lines += [f"* {wrapped[0]}", *(f"  {line}" for line in wrapped[1:])]
    return lines


def lintian_overrides(request: BuildRequest) -> dict[str, str]:
    """debian/<package>.lintian-overrides: each accepted tag under the comment that says why."""
    multiarch = multiarch_triplet(request.arch.value)
    texts: dict[str, list[str]] = {}
    for override in load_deb_packages().lintian_overrides:
        comment = [f"# {line}" for line in textwrap.wrap(override.reason, LINE_WIDTH - 2)]
        for package in override.packages:
            texts.setdefault(package, []).extend([*comment, override.tag.format(multiarch=multiarch), ""])
    return {f"{package}.lintian-overrides": "\n".join(lines) for package, lines in sorted(texts.items())}


def packaged_files(request: BuildRequest) -> dict[str, str]:
    """The units, example configuration and logrotate file every build ships, rendered for /usr and /etc/slurm:
    debian/<package>.<unit>.service (dh_installsystemd), examples/ (dh_installexamples) and
    debian/slurm-smd.logrotate (a conffile in /etc/logrotate.d)."""
    context = artifact_context(request, packaged=True)
    files = {}
    for unit in units():
        text = render_unit(unit.name, context)
        files[f"{unit.package}.{unit.name}.service"] = fill_placeholders(text)
    for name in EXAMPLE_CONFIGS:
        files[f"examples/{name}"] = fill_placeholders(render_example_config(name, context))
    files[f"{MAIN_PACKAGE}.examples"] = "".join(f"debian/examples/{name}\n" for name in EXAMPLE_CONFIGS)
    files[f"{MAIN_PACKAGE}.logrotate"] = render_logrotate(context)
    return files


def fill_placeholders(text: str) -> str:
    """What the tarball's setup script fills in on the target host, known here: the FHS paths."""
    placeholders = {"@SLURM_ROOT@": "/usr", "@SLURM_CONF_DIR@": CONF_DIR, "@SLURM_CONF@": SLURM_CONF}
    for placeholder, value in placeholders.items():
        text = text.replace(placeholder, value)
    return text


def changelog_date(request: BuildRequest) -> str:
    """The release date in debian/changelog's RFC 2822 form: dpkg-buildpackage takes SOURCE_DATE_EPOCH from it."""
    return email.utils.formatdate(request.slurm.source_date_epoch, usegmt=False).replace("-0000", "+0000")


def render_debian_files(request: BuildRequest) -> dict[str, PlanFile]:
    """debian/ as the build script copies it into the source: control, rules and changelog rendered, the rest (the
    .install lists, maintainer scripts, /etc/default files, copyright) as shipped."""
    catalog = load_deb_packages()
    context = {
        "slurm": request.slurm,
        "os": request.toolchain.os,
        "codename": request.toolchain.codename,
        "version": package_version(request),
        "maintainer": package_maintainer(request),
        "packages": catalog.packages,
        "descriptions": {package.name: description_lines(package) for package in catalog.packages},
        "entries": changelog_entries(request),
        "flags": native.build_flags(request),
        "configure_options": native.configure_options(request, install_dirs=package_install_dirs(request)),
        "contribs": native.contribs(request),
        "contrib_scripts": list(load_build_catalog().contrib_scripts),
        "units": units(),
        "date": changelog_date(request),
        "gpu_plugins": list(GPU_PLUGINS) if request.gpu else [],
    }
    files = {name: PlanFile(render(f"{DEBIAN_TEMPLATES}/{name}.j2", **context)) for name in RENDERED}
    files["rules"] = PlanFile(files["rules"].content, mode=0o755)
    generated = {**lintian_overrides(request), **packaged_files(request)}
    for name, content in {**_shipped_debian_files(), **generated}.items():
        mode = 0o755 if name.endswith(("postinst", "postrm")) else 0o644
        files[name] = PlanFile(content, mode=mode)
    return dict(sorted(files.items()))


def _shipped_debian_files() -> dict[str, str]:
    """The files of templates/packages/deb/debian/ that are not templates, by their path below debian/."""
    root = resources.files("slurm_factory").joinpath("templates", *DEBIAN_TEMPLATES.split("/"))
    found: dict[str, str] = {}
    pending = [(root, "")]
    while pending:
        directory, prefix = pending.pop()
        for entry in directory.iterdir():
            if entry.is_dir():
                pending.append((entry, f"{prefix}{entry.name}/"))
            elif not entry.name.endswith(".j2"):
                found[f"{prefix}{entry.name}"] = entry.read_text(encoding="utf-8")
    return dict(sorted(found.items()))


def render_build_script(request: BuildRequest) -> PlanFile:
    script = render(
        f"packages/{BUILD_SCRIPT}.j2",
        slurm=request.slurm,
        toolchain=request.toolchain,
        version=package_version(request),
        source_path=layout.SOURCE_MIRROR / layout.source_mirror_path(request.slurm.sha256),
        plan_dir=layout.PLAN,
        build_dir=layout.BUILD_DIR,
        meta_dir=layout.META_DIR,
        output_dir=OUTPUT_DIR,
        ccache_dir=layout.CCACHE,
        source_date_epoch=request.slurm.source_date_epoch,
        patches=request.patches,
        patch_arguments=PATCH_ARGUMENTS,
        placeholder_maintainer=request.package_maintainer is None,
    )
    return PlanFile(script, mode=0o755)


def render_dockerfile(toolchain_image: ImageSpec, request: BuildRequest) -> str:
    return render(
        "packages/deb.Dockerfile.j2",
        toolchain=request.toolchain,
        toolchain_image=toolchain_image.reference,
        packages=list(PACKAGING_TOOLS),
    )


def make_package_plan(request: BuildRequest, settings: Settings) -> PackagePlan:
    """The package set's plan. Its id is computed from what decides the packages' bytes: the tarball's inputs that
    matter to them (source, patches, flags, the toolchain image) and the packaging (debian/, version)."""
    toolchain_plan = engine_for(request.engine).plan(request, settings)
    toolchain_image = toolchain_plan.image
    dockerfile = render_dockerfile(toolchain_image, request)
    image = image_spec(
        f"{request.toolchain.name}-deb", request.engine.value, dockerfile, project_name=settings.project_name
    )
    debian = render_debian_files(request)
    build_files = {
        BUILD_SCRIPT: render_build_script(request),
        **native.plan_files(request),
        **{f"debian/{name}": plan_file for name, plan_file in debian.items()},
    }
    version = package_version(request)
    identity = inputs_id(
        {
            "slurm": [request.slurm.tag, request.slurm.sha256],
            "source_date_epoch": request.slurm.source_date_epoch,
            "package": "deb",
            "version": version,
            "gpu": request.gpu,
            "toolchain_image": toolchain_image.tag,
            "image": image.tag,
        },
        request.toolchain,
        request.base_image,
        dockerfile=dockerfile,
        files=build_files,
    )
    container = compile_container(request, settings, script=BUILD_SCRIPT, install_prefix=OUTPUT_DIR, files=build_files)
    return PackagePlan(
        request=request,
        build_id=identity,
        image=image,
        container=container,
        artifact_files={},
        source_cache_path=toolchain_plan.source_cache_path,
        artifact_path=settings.builds_dir / "packages" / identity,
        log_path=settings.logs_dir / f"{identity}.log",
        version=version,
        toolchain_image=toolchain_image,
    )
