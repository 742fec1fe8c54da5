"""The plan of `--package rpm`: `slurm-smd.spec`, its sources, the build script and the packaging image, rendered
from the same request as the tarball (its configure options, flags, patches and contribs), for the FHS layout.

The plan is rendered and unit-tested; no image of a dnf toolchain's OS can be had where slurm-factory is developed,
so no .rpm has been built from it yet and a build that would run one is refused
(`request.require_buildable_packages`). Pure: nothing here touches Docker or the disk beyond the package's
templates and data.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import PurePosixPath

from slurm_factory import __version__
from slurm_factory.catalog.build import load_build_catalog
from slurm_factory.catalog.rpm_packages import MAIN_PACKAGE, RPM_PACKAGES_FILE, RpmPackage, load_rpm_packages
from slurm_factory.config import Settings
from slurm_factory.engines import engine_for
from slurm_factory.packages.deb import fill_placeholders
from slurm_factory.packages.versions import rpm_release, rpm_version
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
from slurm_factory.request import BuildRequest, PackageKind

BUILD_SCRIPT = "build-rpm.sh"
SPEC_FILE = f"{MAIN_PACKAGE}.spec"
RPMLINTRC = f"{MAIN_PACKAGE}.rpmlintrc"
# The plan's directory of the spec's SourceN files (units, options files, examples, logrotate).
SOURCES_DIR = "sources"
# Where the package set is written in the container (what is copied out), and rpmbuild's %_topdir.
OUTPUT_DIR = PurePosixPath("/build/packages")
TOPDIR = PurePosixPath("/build/rpmbuild")
# rpmlint: description lines at most 79 columns.
LINE_WIDTH = 79
# Make variables a contrib's build and install take in the packages: the Perl API installs into the vendor
# directory Perl searches (%{perl_vendorarch}), as Fedora's Perl guidelines have it.
CONTRIB_MAKE_ARGUMENTS = {"perlapi": "_perlsitedir=%{perl_vendorarch}"}
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class SpecSource:
    """A `SourceN:` of the spec: its file (in the plan's sources/ and rpmbuild's SOURCES), where %install puts it and
    its text."""

    number: int
    name: str
    target: str
    content: str


@dataclass(frozen=True)
class PackageUnits:
    """The systemd units of one package, for its %post/%preun/%postun."""

    package: RpmPackage
    units: tuple[str, ...]

    @property
    def services(self) -> str:
        """What the %systemd_* macros take: the unit names, space-separated (`slurmctld.service`)."""
        return " ".join(f"{unit}.service" for unit in self.units)


def package_install_dirs() -> native.InstallDirs:
    """The FHS layout of a dnf toolchain: programs in /usr, libraries and plugins in %{_libdir} (/usr/lib64), units
    in %{_unitdir}, PAM modules in the OS's PAM directory. rpm expands the macros."""
    return native.InstallDirs(
        prefix="/usr",
        pam_dir="%{_libdir}/security",
        extra=("--libdir=%{_libdir}", "--with-systemdsystemunitdir=%{_unitdir}"),
    )


def dist_tag(request: BuildRequest) -> str:
    return load_rpm_packages().dist_tag(request.toolchain)


def package_release(request: BuildRequest) -> str:
    """The Release once its dist tag is expanded (`1.sf.el9`)."""
    return rpm_release(release=request.package_release, dist=dist_tag(request))


def package_version(request: BuildRequest) -> str:
    """Version-Release of every package of one build (`24.11.5-1.sf.el9`)."""
    return f"{rpm_version(request.slurm)}-{package_release(request)}"


def description_lines(package: RpmPackage) -> list[str]:
    """The %description, its paragraphs wrapped ("" separates paragraphs, an empty line between them)."""
    lines: list[str] = []
    paragraph: list[str] = []
    for entry in (*package.description, ""):
        if entry:
            paragraph.append(entry)
            continue
        if paragraph:
            lines += [*textwrap.wrap(" ".join(paragraph), LINE_WIDTH, break_on_hyphens=False), ""]
            paragraph = []
    return lines[:-1]


def changelog_date(request: BuildRequest) -> str:
    """The release date as %changelog spells it (`Wed May 07 2025`), in English whatever the locale."""
    date = request.slurm.date
    return f"{_WEEKDAYS[date.weekday()]} {_MONTHS[date.month - 1]} {date.day:02d} {date.year}"


def changelog_entries(request: BuildRequest) -> list[str]:
    """The %changelog entry's items, each wrapped below its `- ` (a `%` doubled: rpm expands macros there)."""
    items = [
        f"Slurm {request.slurm.version} (SchedMD tag {request.slurm.tag}) for {request.toolchain.os}, built by "
        f"slurm-factory {__version__}."
    ]
    items += [f"Patch {patch.name} ({patch.origin}), sha256 {patch.sha256[:16]}." for patch in request.patches]
    lines = []
    for item in items:
        wrapped = textwrap.wrap(item.replace("%", "%%"), LINE_WIDTH - 2, break_on_hyphens=False)
        lines += [f"- {wrapped[0]}", *(f"  {line}" for line in wrapped[1:])]
    return lines


def package_units() -> list[PackageUnits]:
    return [PackageUnits(package, package.units) for package in load_rpm_packages().packages if package.units]


def spec_sources(request: BuildRequest) -> list[SpecSource]:
    """Source1 on: each unit (the tarball's, for /usr) and its options file /etc/sysconfig/<unit>, the example
    configuration (in the main package's documentation) and the logrotate file. Source0 is Slurm's tarball."""
    context = artifact_context(request, packaged=True)
    entries: list[tuple[str, str, str]] = []
    for group in package_units():
        for unit in group.units:
            entries.append(
                (f"{unit}.service", f"%{{_unitdir}}/{unit}.service", fill_placeholders(render_unit(unit, context)))
            )
            entries.append(
                (
                    f"{unit}.sysconfig",
                    f"%{{_sysconfdir}}/sysconfig/{unit}",
                    render("packages/rpm/sysconfig.j2", unit=unit),
                )
            )
    for name in EXAMPLE_CONFIGS:
        text = fill_placeholders(render_example_config(name, context))
        entries.append((f"{name}.example", f"%{{_docdir}}/{MAIN_PACKAGE}/examples/{name}", text))
    entries.append(
        (f"{MAIN_PACKAGE}.logrotate", f"%{{_sysconfdir}}/logrotate.d/{MAIN_PACKAGE}", render_logrotate(context))
    )
    return [SpecSource(number, *entry) for number, entry in enumerate(entries, start=1)]


def source_tarball_name(request: BuildRequest) -> str:
    """Source0 as the build script copies it into rpmbuild's SOURCES (the spec names it `slurm-%{version}.tar.gz`)."""
    return f"slurm-{rpm_version(request.slurm)}.tar.gz"


def build_requires(request: BuildRequest) -> list[str]:
    """What rpmbuild checks is installed before it builds: the toolchain's -dev packages (the image has them), the
    compiler, Perl's build tools and the systemd macros."""
    catalog = load_rpm_packages()
    return [
        *catalog.build_requires,
        catalog.systemd_macros_package(request.toolchain),
        *request.toolchain.native.build_packages,
    ]


def render_spec(request: BuildRequest) -> PlanFile:
    catalog = load_rpm_packages()
    main, *subpackages = catalog.packages
    if main.name != MAIN_PACKAGE:
        raise ValueError(f"{RPM_PACKAGES_FILE}: the first package is the spec's Name, {MAIN_PACKAGE}, not {main.name}")
    spec = render(
        f"packages/rpm/{SPEC_FILE}.j2",
        slurm=request.slurm,
        toolchain=request.toolchain,
        catalog=catalog,
        packager=request.package_maintainer or catalog.packager,
        packager_given=request.package_maintainer is not None,
        main=main,
        subpackages=subpackages,
        descriptions={package.name: description_lines(package) for package in catalog.packages},
        version=rpm_version(request.slurm),
        release=request.package_release,
        dist=dist_tag(request),
        full_version=package_version(request),
        build_requires=build_requires(request),
        sources=spec_sources(request),
        patches=[PurePosixPath(patch.plan_name).name for patch in request.patches],
        patch_arguments=PATCH_ARGUMENTS,
        flags=native.build_flags(request),
        configure_options=native.configure_options(request, install_dirs=package_install_dirs()),
        contribs=native.contribs(request),
        contrib_arguments=CONTRIB_MAKE_ARGUMENTS,
        contrib_scripts=list(load_build_catalog().contrib_scripts),
        package_units=package_units(),
        changelog_date=changelog_date(request),
        changelog=changelog_entries(request),
    )
    return PlanFile(spec)


def render_rpmlintrc() -> PlanFile:
    """rpmlint's accepted findings, each filter under the comment that says why."""
    lines = ["# rpmlint filters of the slurm-smd packages (catalog/data/rpm_packages.yaml), each under its reason.", ""]
    for entry in load_rpm_packages().rpmlint_filters:
        lines += [f"# {line}" for line in textwrap.wrap(entry.reason, LINE_WIDTH - 2)]
        lines += [f'addFilter("{entry.pattern}")', ""]
    return PlanFile("\n".join(lines))


def render_build_script(request: BuildRequest) -> PlanFile:
    script = render(
        f"packages/{BUILD_SCRIPT}.j2",
        slurm=request.slurm,
        toolchain=request.toolchain,
        version=package_version(request),
        source_path=layout.SOURCE_MIRROR / layout.source_mirror_path(request.slurm.sha256),
        source_name=source_tarball_name(request),
        plan_dir=layout.PLAN,
        topdir=TOPDIR,
        meta_dir=layout.META_DIR,
        output_dir=OUTPUT_DIR,
        ccache_dir=layout.CCACHE,
        source_date_epoch=request.slurm.source_date_epoch,
        patches=request.patches,
        spec_file=SPEC_FILE,
        rpmlintrc=RPMLINTRC,
        sources_dir=SOURCES_DIR,
    )
    return PlanFile(script, mode=0o755)


def render_dockerfile(toolchain_image: ImageSpec, request: BuildRequest) -> str:
    catalog = load_rpm_packages()
    return render(
        "packages/rpm.Dockerfile.j2",
        toolchain=request.toolchain,
        toolchain_image=toolchain_image.reference,
        packages=[*catalog.packaging_tools, catalog.systemd_macros_package(request.toolchain)],
    )


def build_files(request: BuildRequest) -> dict[str, PlanFile]:
    """The plan directory: the build script, the spec, rpmlint's filters, the spec's sources and the patches."""
    return {
        BUILD_SCRIPT: render_build_script(request),
        SPEC_FILE: render_spec(request),
        RPMLINTRC: render_rpmlintrc(),
        **{f"{SOURCES_DIR}/{source.name}": PlanFile(source.content) for source in spec_sources(request)},
        **native.plan_files(request),
    }


def make_package_plan(request: BuildRequest, settings: Settings) -> PackagePlan:
    """The .rpm package set's plan (the same shape as packages/deb.py's). Its id is computed from what decides the
    packages' bytes: the tarball's inputs that matter to them (source, patches, flags, the toolchain image) and the
    packaging (the spec, its sources, the version)."""
    if request.native_package_kind is not PackageKind.RPM:
        raise ValueError(f"an rpm plan of a request for {request.native_package_kind} on {request.toolchain.name}")
    toolchain_plan = engine_for(request.engine).plan(request, settings)
    toolchain_image = toolchain_plan.image
    dockerfile = render_dockerfile(toolchain_image, request)
    image = image_spec(
        f"{request.toolchain.name}-rpm", request.engine.value, dockerfile, project_name=settings.project_name
    )
    files = build_files(request)
    version = package_version(request)
    identity = inputs_id(
        {
            "slurm": [request.slurm.tag, request.slurm.sha256],
            "source_date_epoch": request.slurm.source_date_epoch,
            "package": "rpm",
            "version": version,
            "gpu": request.gpu,
            "toolchain_image": toolchain_image.tag,
            "image": image.tag,
        },
        request.toolchain,
        request.base_image,
        dockerfile=dockerfile,
        files=files,
    )
    container = compile_container(request, settings, script=BUILD_SCRIPT, install_prefix=OUTPUT_DIR, files=files)
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
        kind="rpm",
    )
