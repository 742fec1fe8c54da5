"""The native engine's plan: a toolchain image with the OS's -dev packages and Slurm's own configure/make."""

from __future__ import annotations

from dataclasses import dataclass

from slurm_factory.catalog.build import CompilerFlags, load_build_catalog, release_flags
from slurm_factory.catalog.toolchains import multiarch_triplet
from slurm_factory.patches import PATCH_ARGUMENTS
from slurm_factory.plan import layout
from slurm_factory.plan.model import PlanFile
from slurm_factory.plan.templating import render
from slurm_factory.request import BuildRequest

BUILD_SCRIPT = "build-native.sh"
# The loader each PAM module of the tree sits behind (templates/common/), compiled in the build container.
PAM_LOADER = "pam_module_loader.c"
# Perl's MakeMaker builds XS modules with the build host's compiler: a cross build ships neither the Perl API nor
# seff, which needs it.
NOT_CROSS_BUILT_CONTRIBS = ("perlapi", "seff")
# What a cross image whose target arch's packages are in another archive runs on the sources it copies.
APT_SOURCES_SCRIPT = "keep-apt-sources-to-arch.sh"
# Slurm 26.05 dropped the http-parser dependency of slurmrestd; its configure no longer accepts the option.
HTTP_PARSER_DROPPED = (26, 5)
# The dynamic loader of each cross target: it lists a cross-built binary's libraries (what ldd does natively).
CROSS_LOADERS = {"arm64": "/lib/ld-linux-aarch64.so.1"}


def image_packages(request: BuildRequest) -> list[str]:
    """The toolchain, and the -dev packages Slurm links against. A cross build installs the build host's tools,
    the OS's cross compiler for the target arch, and the target arch's -dev packages (`libfoo-dev:arm64`)."""
    toolchain = request.toolchain
    build_packages = [*toolchain.native.build_packages, *(toolchain.native.gpu_build_packages if request.gpu else ())]
    if not request.cross:
        return [*toolchain.packages.toolchain_packages, *build_packages]
    return [
        *toolchain.packages.toolchain_packages,
        *toolchain.packages.cross_packages[request.arch.value],
        *(f"{package}:{request.arch.value}" for package in build_packages),
    ]


def image_repositories(request: BuildRequest) -> list[str]:
    toolchain = request.toolchain
    return [*toolchain.repositories, *(toolchain.gpu_repositories if request.gpu else ())]


def foreign_sources_image(request: BuildRequest) -> str | None:
    """The image whose apt sources a cross build adds for the target arch (Ubuntu's ports), or None when the build
    host's archive carries every arch (Debian)."""
    support = request.toolchain.arches.get(request.arch.value)
    if not request.cross or support is None or not support.foreign_apt_sources:
        return None
    return support.base_image


def image_context_files(request: BuildRequest) -> dict[str, PlanFile]:
    """The files the toolchain image's Dockerfile copies: the apt sources script of a ports cross build."""
    if foreign_sources_image(request) is None:
        return {}
    return {APT_SOURCES_SCRIPT: PlanFile(render(f"dockerfile/{APT_SOURCES_SCRIPT}"), mode=0o755)}


def render_dockerfile(request: BuildRequest) -> str:
    return render(
        f"dockerfile/{request.toolchain.family}.Dockerfile.j2",
        toolchain=request.toolchain,
        base_image=request.base_image,
        engine=request.engine.value,
        packages=image_packages(request),
        repositories=image_repositories(request),
        foreign_arch=request.arch.value if request.cross else None,
        foreign_sources_image=foreign_sources_image(request),
        apt_sources_script=APT_SOURCES_SCRIPT,
    )


@dataclass(frozen=True)
class InstallDirs:
    """Where configure installs: the only part of the options the native packages (packages/deb.py) change."""

    prefix: str
    pam_dir: str
    # What the packages add (libdir, the systemd unit directory); the tree has none.
    extra: tuple[str, ...] = ()


def tree_install_dirs(request: BuildRequest) -> InstallDirs:
    """The tarball's tree: its relocatable prefix, with the PAM modules inside it."""
    prefix = layout.install_prefix(request.artifact_root)
    return InstallDirs(prefix=str(prefix), pam_dir=f"{prefix}/lib/security")


def configure_options(request: BuildRequest, *, install_dirs: InstallDirs | None = None) -> list[str]:
    """Slurm's configure options: everything the OS provides is enabled explicitly, so a missing library fails
    configure instead of silently dropping a plugin. `install_dirs` defaults to the tarball's tree."""
    dirs = install_dirs or tree_install_dirs(request)
    native = request.toolchain.native
    options = [
        f"--prefix={dirs.prefix}",
        *dirs.extra,
        *build_flags(request).configure,
        "--sysconfdir=/etc/slurm",
        "--localstatedir=/var",
        "--runstatedir=/run",
        "--without-rpath",
        "--disable-static",
        "--enable-pam",
        f"--with-pam_dir={dirs.pam_dir}",
        "--enable-cgroupv2",
        "--enable-slurmrestd",
        "--with-munge",
        "--with-json",
        "--with-yaml",
        "--with-jwt",
        "--with-hwloc",
        "--with-lz4",
        "--with-lua",
        "--with-libcurl",
        *(option.format(multiarch=multiarch_triplet(request.arch.value)) for option in native.configure_options),
    ]
    if request.cross:
        options += [f"--build={multiarch_triplet(request.build_arch.value)}", f"--host={cross_triplet(request)}"]
    if request.slurm.key < (*HTTP_PARSER_DROPPED, 0, 0):
        options.append("--with-http-parser")
    if request.gpu:
        options += request.toolchain.native.gpu_configure_options
    return options


def cross_triplet(request: BuildRequest) -> str | None:
    """The target's triplet for a cross build (the compiler prefix and configure's --host), else None."""
    return multiarch_triplet(request.arch.value) if request.cross else None


def build_flags(request: BuildRequest) -> CompilerFlags:
    """The release and hardening flags for the request's arch and the toolchain's GCC."""
    return release_flags(request.arch.value, request.compiler_major)


def contribs(request: BuildRequest) -> list[str]:
    """The contribs/ directories built and installed (catalog/data/build.yaml)."""
    shipped = load_build_catalog().contribs
    return [name for name in shipped if not (request.cross and name in NOT_CROSS_BUILT_CONTRIBS)]


def pam_loader_file() -> PlanFile:
    """The C source of the loader each PAM module of a tree sits behind (both engines compile it)."""
    return PlanFile(render(f"common/{PAM_LOADER}"))


def plan_files(request: BuildRequest) -> dict[str, PlanFile]:
    """What the build script reads from the plan directory besides itself: the patches and the PAM loader."""
    files = {patch.plan_name: PlanFile(patch.text) for patch in request.patches}
    files[PAM_LOADER] = pam_loader_file()
    return files


def render_build_script(request: BuildRequest) -> PlanFile:
    catalog = load_build_catalog()
    script = render(
        f"native/{BUILD_SCRIPT}.j2",
        slurm=request.slurm,
        toolchain=request.toolchain,
        gpu=request.gpu,
        prefix=layout.install_prefix(request.artifact_root),
        plan_dir=layout.PLAN,
        flags=build_flags(request),
        patches=request.patches,
        patch_arguments=PATCH_ARGUMENTS,
        contribs=contribs(request),
        contrib_scripts=list(catalog.contrib_scripts),
        source_path=layout.SOURCE_MIRROR / layout.source_mirror_path(request.slurm.sha256),
        build_dir=layout.BUILD_DIR,
        meta_dir=layout.META_DIR,
        ccache_dir=layout.CCACHE,
        configure_options=configure_options(request),
        source_date_epoch=request.slurm.source_date_epoch,
        cross_triplet=cross_triplet(request),
        cross_loader=CROSS_LOADERS.get(request.arch.value) if request.cross else None,
        runtime_package_names=list(request.toolchain.native.runtime_packages),
    )
    return PlanFile(script, mode=0o755)
