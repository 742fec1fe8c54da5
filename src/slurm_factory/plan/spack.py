"""The Spack engine's plan: toolchain image with a pinned Spack, our overlay package repository, the Spack
environment (as data) and the in-container build script.

The environment follows the request: GPU variants, Lmod flat or hierarchical modules, which binary mirrors are read
(`--buildcache`, `--use-local-buildcache`, `--buildcache-url`) and which one is written (`--publish`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import PurePosixPath
from typing import Any

from slurm_factory import __version__
from slurm_factory.catalog import SlurmRelease, Toolchain, load_releases
from slurm_factory.catalog.build import load_build_catalog, release_flags
from slurm_factory.catalog.compilers import load_gcc_catalog
from slurm_factory.catalog.os_packages import OsExternal, OsPackagesMode, os_externals
from slurm_factory.catalog.spack_pins import SpackPins, load_spack_pins
from slurm_factory.choices import Arch
from slurm_factory.plan import layout
from slurm_factory.plan.image_inputs import PACKAGES_CONTEXT, SPACK_CONTEXT, WHEELS_CONTEXT, ImageInputs
from slurm_factory.plan.model import PlanFile
from slurm_factory.plan.spack_yaml import Spec, dump_spack_yaml
from slurm_factory.plan.templating import read_template, render
from slurm_factory.request import BuildcacheMode, BuildRequest, CompilerRequest, PublishMode, file_url_path
from slurm_factory.s3 import is_s3_url
from slurm_factory.signing import SECRET_KEY_FILE, SECRET_PASSPHRASE_FILE
from slurm_factory.spack_site_packages import overrides_os

BUILD_SCRIPT = "build-spack.sh"
PUBLISH_SCRIPT = "publish-spack.sh"
COMPILER_SCRIPT = "build-compiler.sh"
COMPILER_PUBLISH_SCRIPT = "publish-compiler.sh"
COMPILER_ENVIRONMENT = "compiler"
ENVIRONMENT_FILE = "spack.yaml"
# --os-packages: what the environment takes from the toolchain OS (plan data), the script that detects it in the
# build container, and the file it writes, which spack.yaml includes.
OS_EXTERNALS_PLAN = "os-externals.json"
DETECT_EXTERNALS_SCRIPT = "detect_externals.py"
EXTERNALS_FILE = "externals.yaml"
REPO_NAMESPACE = "slurm_factory"
OVERLAY_PACKAGE = PurePosixPath("spack_repo", REPO_NAMESPACE, "packages", "slurm", "package.py")
OVERLAY_REPO_FILE = PurePosixPath("spack_repo", REPO_NAMESPACE, "repo.yaml")
SOURCES_MIRROR = "slurm-factory-sources"
LOCAL_BUILDCACHE_MIRROR = "slurm-factory-local"
REMOTE_BUILDCACHE_MIRROR = "slurm-factory-remote"
PUBLISH_MIRROR = "slurm-factory-publish"
# Slurm's variants as slurm-factory builds it (the overlay adds `lua`); `+nvml +rsmi` with --gpu.
SLURM_VARIANTS = "+pmix +hwloc +restd +cgroup +pam +lua +mariadb +readline sysconfdir=/etc/slurm"
GPU_VARIANTS = "+nvml +rsmi"
# Vendor GPU stacks are build dependencies of the GPU plugins only; they never enter the artifact.
GPU_VIEW_EXCLUDES = ("cuda", "rocm-smi-lib")
# Built with the OS compiler, the compiler's runtime libraries (libstdc++, libgcc_s, libgfortran, ...) are the
# OS's own: the host has them, the artifact does not ship a second copy. A --compiler-version GCC's are shipped.
OS_RUNTIME = ("gcc-runtime",)


def compiler_spec(request: BuildRequest) -> str:
    version = request.compiler_version or request.toolchain.spack.compiler
    return f"gcc@{version}"


def _gcc_external(version: str, prefix: str) -> dict[str, Any]:
    """A GCC Spack does not build (Spack 1.x: compilers are packages, registered as externals)."""
    return {
        "spec": Spec(f"gcc@{version} languages:='c,c++,fortran'"),
        "prefix": prefix,
        "extra_attributes": {
            "compilers": {"c": f"{prefix}/bin/gcc", "cxx": f"{prefix}/bin/g++", "fortran": f"{prefix}/bin/gfortran"}
        },
    }


def _mpi_spec(request: BuildRequest) -> Spec:
    """Open MPI built by Spack with Slurm support; an MPI that is already there (the OS's under `--os-packages
    all`, or one the site's file configures) is what it is, so then any `mpi` provider the configuration allows."""
    from_os = any(external.name == "openmpi" for external in request_os_externals(request))
    site = request.site_packages
    from_site = "mpi" in site or "externals" in (site.get("openmpi") or {})
    return Spec("mpi") if from_os or from_site else Spec("openmpi schedulers=slurm")


def _specs(request: BuildRequest) -> list[Spec]:
    slurm = f"slurm@{request.slurm.tag} {SLURM_VARIANTS}" + (f" {GPU_VARIANTS}" if request.gpu else "")
    return [Spec(slurm), _mpi_spec(request), Spec("pmix")]


def request_os_externals(request: BuildRequest) -> tuple[OsExternal, ...]:
    """What this build takes from the toolchain OS: the `--os-packages` mode's list for the toolchain, minus the
    packages the site's `--spack-packages` file decides itself (its own externals, or built by Spack)."""
    return tuple(
        external
        for external in os_externals(request.toolchain, request.os_packages, gpu=request.gpu)
        if not overrides_os(request.site_packages.get(external.name) or {})
    )


def _quoted(value: Any) -> Any:
    """Every string of a site file becomes a `Spec`, written double-quoted: spec strings such as `pmix@5:` are
    unsafe unquoted, and a quoted prefix or variant value means the same to Spack."""
    if isinstance(value, str):
        return Spec(value)
    if isinstance(value, list):
        return [_quoted(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _quoted(item) for key, item in value.items()}
    return value


def _merge_site_packages(generated: dict[str, Any], site: dict[str, Any]) -> dict[str, Any]:
    """The site's packages.yaml merged over the generated one, per package and key: the site's value wins."""
    merged = dict(generated)
    for name, entry in site.items():
        merged[name] = {**merged.get(name, {}), **_quoted(entry)}
    return merged


def _packages(request: BuildRequest, pins: SpackPins) -> dict[str, Any]:
    """The compiler for everything: the OS GCC, or the `--compiler-version` GCC that the build script installs from
    the buildcache into a fixed view before concretizing (so it is an external here, never built in this env).
    Packages taken from the OS, and the virtuals they provide, are not buildable: their externals (the versions the
    image really has) come from the included externals file the build container writes before concretizing."""
    compiler = Spec(compiler_spec(request))
    if request.compiler_version is None:
        gcc = _gcc_external(request.toolchain.spack.compiler, "/usr")
    else:
        gcc = _gcc_external(request.compiler_version, str(layout.SPACK_COMPILER_VIEW))
    packages: dict[str, Any] = {
        "all": {"require": [Spec(f"target={pins.target(request.arch.value)}")]},
        "c": {"require": [compiler]},
        "cxx": {"require": [compiler]},
        "fortran": {"require": [compiler]},
        "gcc": {"externals": [gcc], "buildable": False},
    }
    for external in request_os_externals(request):
        for name in (external.name, *external.provides):
            packages[name] = {"buildable": False}
    return _merge_site_packages(packages, request.site_packages)


def os_externals_plan(request: BuildRequest) -> dict[str, Any]:
    """The detection step's input: which Spack packages come from which OS packages, and where they live."""
    return {
        "family": request.toolchain.family,
        "mode": request.os_packages.value,
        "externals": [
            {"name": e.name, "kind": e.kind, "os_packages": list(e.os_packages), "prefix": e.prefix, "detect": e.detect}
            for e in request_os_externals(request)
        ],
    }


def _mirror(
    url: str, *, binary: bool, source: bool, signed: bool | None = None, endpoint: str | None = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {"url": url}
    if endpoint is not None and is_s3_url(url):
        entry["endpoint_url"] = endpoint  # an S3-compatible store; credentials come from files, never from here
    entry.update(binary=binary, source=source)
    if signed is not None:
        entry["signed"] = signed
    return entry


def container_mirror_url(url: str, mount: PurePosixPath) -> str:
    """A `file://` mirror is bind-mounted at a fixed container path (plan.spack_mounts); other URLs are used as
    they are."""
    return f"file://{mount}" if file_url_path(url) is not None else url


def mirrors(request: BuildRequest) -> dict[str, Any]:
    """The source mirror always; binary mirrors only where the request reads or writes one."""
    entries: dict[str, Any] = {
        SOURCES_MIRROR: _mirror(f"file://{layout.SOURCE_MIRROR}", binary=False, source=True),
    }
    reads_local = request.use_local_buildcache or (
        request.buildcache is not BuildcacheMode.NONE and request.buildcache_url is None
    )
    if reads_local:
        # Our own builds' cache: signatures are checked when it was published signed, which `--publish` enforces.
        entries[LOCAL_BUILDCACHE_MIRROR] = _mirror(
            f"file://{layout.BUILDCACHE}", binary=True, source=False, signed=False
        )
    if request.buildcache_url is not None:
        remote = container_mirror_url(request.buildcache_url, layout.REMOTE_BUILDCACHE)
        entries[REMOTE_BUILDCACHE_MIRROR] = _mirror(
            remote, binary=True, source=False, signed=True, endpoint=request.s3_endpoint_url
        )
    if request.publish is not PublishMode.NONE:
        entries[PUBLISH_MIRROR] = _publish_mirror(request.publish_url, request.s3_endpoint_url)
    return entries


def _publish_mirror(publish_url: str | None, endpoint: str | None) -> dict[str, Any]:
    """The mirror a signed push writes to."""
    return _mirror(publish_target(publish_url), binary=True, source=False, signed=True, endpoint=endpoint)


def publish_target(publish_url: str | None) -> str:
    """Inside the container the default (local) mirror is the mounted ~/.slurm-factory/spack-buildcache."""
    if publish_url is None:
        return f"file://{layout.BUILDCACHE}"
    return container_mirror_url(publish_url, layout.PUBLISH_MIRROR)


def use_buildcache(request: BuildRequest) -> str:
    """`spack install --use-buildcache` for the request: the contract's none/deps/all, never with --no-cache."""
    if request.no_cache:
        return "never"
    if request.buildcache is BuildcacheMode.ALL:
        return "auto"
    if request.buildcache is BuildcacheMode.DEPS or request.use_local_buildcache:
        return "package:never,dependencies:auto"
    return "never"


def _modules(request: BuildRequest) -> dict[str, Any]:
    lmod: dict[str, Any] = {
        "core_compilers": [Spec(compiler_spec(request))],
        # "hierarchy:" replaces Spack's default list ([mpi]) instead of merging with it: flat must mean flat.
        "hierarchy:": ["mpi"] if request.enable_hierarchy else [],
        "hash_length": 0,
        "exclude_implicits": True,
        "all": {"autoload": "direct"},
        # The view's path, not {prefix}: Spack applies these after mapping paths onto the view, and only view
        # paths are rewritten to the unpacked root by the build script.
        "slurm": {"environment": {"prepend_path": {"PATH": str(layout.SPACK_VIEW / "sbin")}}},
        "projections": {"all": "{name}/{version}"},
    }
    return {
        "default": {
            "enable": ["lmod"],
            "roots": {"lmod": str(layout.SPACK_MODULES)},
            "use_view": "default",
            "lmod": lmod,
        }
    }


def _config(pins: SpackPins, *, no_cache: bool) -> dict[str, Any]:
    return {
        "install_tree": {"root": str(layout.SPACK_INSTALL_TREE), "padded_length": pins.padded_length},
        "source_cache": str(layout.SOURCE_MIRROR),
        "binary_index_root": str(layout.BINARY_INDEX),
        "build_stage": ["/tmp/spack-stage"],
        "ccache": not no_cache,
    }


def _bootstrap() -> dict[str, Any]:
    """GnuPG (signing, signature checks of signed mirrors) and patchelf are found through Spack's bootstrap code,
    which refuses to look at all when bootstrapping is disabled; enabled with no sources, it finds the image's
    programs and can never download anything."""
    return {"enable": True, "sources:": []}


def _builtin_repo() -> str:
    return str(layout.SPACK_PACKAGES / "repos" / "spack_repo" / "builtin")


def environment(request: BuildRequest) -> dict[str, Any]:
    """The Spack environment (spack.yaml) as data."""
    pins = load_spack_pins()
    view: dict[str, Any] = {"root": str(layout.SPACK_VIEW), "link_type": "copy"}
    excluded = [*(GPU_VIEW_EXCLUDES if request.gpu else ()), *(() if request.compiler_version else OS_RUNTIME)]
    if excluded:
        view["exclude"] = [Spec(name) for name in excluded]
    # The externals the build container detects before concretizing (optional: the detection step itself runs
    # with this environment loaded, before the file exists).
    include = [{"path": EXTERNALS_FILE, "optional": True}] if request_os_externals(request) else []
    return {
        "spack": {
            **({"include": include} if include else {}),
            "specs": _specs(request),
            "concretizer": {"unify": True, "reuse": not request.no_cache},
            "repos": {
                REPO_NAMESPACE: str(layout.PLAN / OVERLAY_PACKAGE.parents[2]),
                "builtin": _builtin_repo(),
            },
            "packages": _packages(request, pins),
            "config": _config(pins, no_cache=request.no_cache),
            "bootstrap": _bootstrap(),
            # "mirrors:" replaces Spack's default mirrors: only what the request names is read or written.
            "mirrors:": mirrors(request),
            "view": {"default": view},
            "modules": _modules(request),
        }
    }


# The sections of spack.yaml that decide a concretization; the others (mirrors, config, bootstrap, view, modules)
# say where things come from and go, not what is built.
CONCRETIZATION_SECTIONS = ("include", "specs", "concretizer", "repos", "packages")


def concretization_inputs(environment_document: dict[str, Any], image_tag: str, files: dict[str, PlanFile]) -> str:
    """A digest of what decides the environment's concretization, known before the container runs: the toolchain
    image (Spack, its builtin packages, the OS), the deciding sections of spack.yaml and the files of the overlay
    repository (the recipe and its patches). The build script adds the externals it detects and stores the
    spack.lock under the result (templates/spack/_install.sh.j2)."""
    section = environment_document["spack"]
    decided = {key: section[key] for key in CONCRETIZATION_SECTIONS if key in section}
    # `reuse` is off for --no-cache, whose fresh solve then replaces the stored lock of the same inputs.
    decided["concretizer"] = {k: v for k, v in decided.get("concretizer", {}).items() if k != "reuse"}
    payload = {
        "image": image_tag,
        "environment": decided,
        "files": {name: plan_file.content for name, plan_file in sorted(files.items())},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def render_environment(request: BuildRequest) -> PlanFile:
    header = (
        f"# Spack environment for Slurm {request.slurm.version} on {request.toolchain.name}, generated by "
        f"slurm-factory {__version__}.\n"
    )
    return PlanFile(header + dump_spack_yaml(environment(request)))


def render_os_externals(request: BuildRequest) -> dict[str, PlanFile]:
    """The detection step's input and script, when the build takes anything from the OS."""
    if not request_os_externals(request):
        return {}
    return {
        OS_EXTERNALS_PLAN: PlanFile(json.dumps(os_externals_plan(request), indent=2) + "\n"),
        DETECT_EXTERNALS_SCRIPT: PlanFile(read_template(f"spack/{DETECT_EXTERNALS_SCRIPT}")),
    }


# contribs/ the builtin recipe installs itself, and those the Spack engine leaves out: the Perl API and seff (which
# needs it) would make Spack's perl a run-time dependency of the tree.
BUILTIN_CONTRIBS = ("pmi2",)
NOT_SPACK_CONTRIBS = ("perlapi", "seff")
PAM_CONTRIBS = ("pam", "pam_slurm_adopt")


def spack_contribs() -> list[str]:
    """The contribs/ directories the overlay recipe installs besides the builtin recipe's."""
    excluded = {*BUILTIN_CONTRIBS, *NOT_SPACK_CONTRIBS}
    return [name for name in load_build_catalog().contribs if name not in excluded]


def overlay_releases(request: BuildRequest) -> list[SlurmRelease]:
    """The catalog's releases, and the requested one when a site's releases file added it."""
    releases = list(load_releases())
    return releases if request.slurm in releases else sorted([*releases, request.slurm])


def render_overlay_repo(request: BuildRequest) -> dict[str, PlanFile]:
    """Our package repository: `slurm` extending the builtin recipe with every catalog release, our fixes and the
    build's patches (files beside package.py, which the recipe's `patch()` directives name)."""
    catalog = load_build_catalog()
    package = render(
        "spack/slurm_package.py.j2",
        releases=overlay_releases(request),
        flags=release_flags(request.arch.value, request.compiler_major),
        patches=request.patches,
        contribs=[*spack_contribs()],
        pam_contribs=PAM_CONTRIBS,
        contrib_scripts=list(catalog.contrib_scripts),
    )
    files = {
        str(OVERLAY_REPO_FILE): PlanFile(render("spack/repo.yaml.j2", namespace=REPO_NAMESPACE)),
        str(OVERLAY_PACKAGE): PlanFile(package),
    }
    for patch in request.patches:
        files[str(OVERLAY_PACKAGE.parent / patch.name)] = PlanFile(patch.text)
    return files


def image_packages(
    toolchain: Toolchain, os_packages: OsPackagesMode = OsPackagesMode.NONE, *, gpu: bool = False
) -> list[str]:
    """What the image installs: the family's tools for Spack, the Python that runs it and the OS packages of the
    `--os-packages` mode (all of them, whatever a site file overrides, so one image serves every site)."""
    supplied = [
        package for external in os_externals(toolchain, os_packages, gpu=gpu) for package in external.os_packages
    ]
    return list(dict.fromkeys([*toolchain.packages.spack_packages, *toolchain.spack.python_packages, *supplied]))


def image_components(toolchain: Toolchain, os_packages: OsPackagesMode, *, gpu: bool) -> list[str]:
    """apt components the image enables: the GPU ones (Debian's NVML headers are in non-free) only when the OS
    supplies the GPU libraries. (dnf repositories are enabled by the `repositories` macro.)"""
    if toolchain.family != "apt":
        return []
    supplies_gpu = any(external.kind == "gpu" for external in os_externals(toolchain, os_packages, gpu=gpu))
    return [*toolchain.repositories, *(toolchain.gpu_repositories if supplies_gpu else ())]


def render_dockerfile(
    toolchain: Toolchain,
    base_image: str,
    inputs: ImageInputs,
    os_packages: OsPackagesMode = OsPackagesMode.NONE,
    *,
    gpu: bool = False,
) -> str:
    """The Spack toolchain image; shared by Slurm builds and `build-compiler` of the same toolchain (which takes
    nothing from the OS, so its image is the `none` one)."""
    return render(
        "dockerfile/spack.Dockerfile.j2",
        toolchain=toolchain,
        base_image=base_image,
        packages=image_packages(toolchain, os_packages, gpu=gpu),
        components=image_components(toolchain, os_packages, gpu=gpu),
        pins=load_spack_pins(),
        spack_root=layout.SPACK_ROOT,
        spack_packages=layout.SPACK_PACKAGES,
        spack_python=layout.SPACK_PYTHON,
        inputs=inputs,
        contexts={"spack": SPACK_CONTEXT, "packages": PACKAGES_CONTEXT, "wheels": WHEELS_CONTEXT},
    )


def _secret_names() -> dict[str, Any]:
    return {"secrets_dir": layout.SECRETS, "key_file": SECRET_KEY_FILE, "passphrase_file": SECRET_PASSPHRASE_FILE}


def render_build_script(request: BuildRequest) -> PlanFile:
    script = render(
        f"spack/{BUILD_SCRIPT}.j2",
        **_step_names(layout.install_prefix(request.artifact_root)),
        slurm=request.slurm,
        toolchain=request.toolchain,
        gpu=request.gpu,
        view=layout.SPACK_VIEW,
        modules=layout.SPACK_MODULES,
        use_buildcache=use_buildcache(request),
        fresh=request.no_cache,
        compiler_environment=COMPILER_ENVIRONMENT if request.compiler_version else None,
        compiler_view=layout.SPACK_COMPILER_VIEW,
        os_externals=bool(request_os_externals(request)),
        os_externals_plan=OS_EXTERNALS_PLAN,
        detect_script=DETECT_EXTERNALS_SCRIPT,
        externals_file=EXTERNALS_FILE,
        concretizations=layout.CONCRETIZATIONS,
        remote_buildcache=request.buildcache_url is not None,
        python=request.toolchain.spack.python,
        source_date_epoch=request.slurm.source_date_epoch,
        # What the tree runs without linking it: munge's daemon (the OS's runtime packages of the externals are
        # named by the detection step and added by the artifact layer).
        runtime_package_names=["munge"],
        plan_dir=layout.PLAN,
        flags=release_flags(request.arch.value, request.compiler_major),
        contribs=[*BUILTIN_CONTRIBS, *spack_contribs(), *load_build_catalog().contrib_scripts],
    )
    return PlanFile(script, mode=0o755)


def _step_names(prefix: PurePosixPath) -> dict[str, Any]:
    """What every in-container Spack step (build or publish) needs to find the environment and its outputs."""
    return {
        "prefix": prefix,
        "spack_root": layout.SPACK_ROOT,
        "environment_dir": layout.PLAN,
        "meta_dir": layout.META_DIR,
        "ccache_dir": layout.CCACHE,
    }


_PUSH_ONLY = {PublishMode.SLURM: "package", PublishMode.DEPS: "dependencies"}
_PUSHED = {PublishMode.SLURM: "Slurm", PublishMode.DEPS: "Slurm's dependencies", PublishMode.ALL: "Slurm and its stack"}


def render_publish_script(request: BuildRequest) -> PlanFile | None:
    """The signed push, a step of its own so the key reaches the container only after the build."""
    if request.publish is PublishMode.NONE:
        return None
    script = render(
        f"spack/{PUBLISH_SCRIPT}.j2",
        **_step_names(layout.install_prefix(request.artifact_root)),
        **_secret_names(),
        what=_PUSHED[request.publish],
        publish_mirror=PUBLISH_MIRROR,
        push_only=_PUSH_ONLY.get(request.publish),
    )
    return PlanFile(script, mode=0o755)


def _gcc_environment(
    gcc_version: str, toolchain: Toolchain, arch: Arch, *, no_cache: bool, mirrors: dict[str, Any], view: dict[str, Any]
) -> dict[str, Any]:
    """One GCC built by the OS compiler. `build-compiler` builds and pushes it; `--compiler-version` installs the
    same environment from the buildcache (same specs and packages, hence the same hash)."""
    pins = load_spack_pins()
    catalog = load_gcc_catalog()
    os_compiler = Spec(f"gcc@{toolchain.spack.compiler}")
    gcc = f"gcc@{gcc_version} languages={','.join(catalog.languages)}" + (" +binutils" if catalog.binutils else "")
    return {
        "spack": {
            "specs": [Spec(gcc)],
            "concretizer": {"unify": True, "reuse": not no_cache},
            "repos": {"builtin": _builtin_repo()},
            "packages": {
                "all": {"require": [Spec(f"target={pins.target(arch.value)}")]},
                "c": {"require": [os_compiler]},
                "cxx": {"require": [os_compiler]},
                "fortran": {"require": [os_compiler]},
                "gcc": {"externals": [_gcc_external(toolchain.spack.compiler, "/usr")], "buildable": True},
            },
            "config": _config(pins, no_cache=no_cache),
            "bootstrap": _bootstrap(),
            "mirrors:": mirrors,
            "view": {"default": view},
        }
    }


def compiler_publishes_elsewhere(request: CompilerRequest) -> bool:
    """`build-compiler` always pushes to the local buildcache; `--publish all --publish-url URL` pushes there too."""
    return request.publish is PublishMode.ALL and request.publish_url is not None


def compiler_environment(request: CompilerRequest) -> dict[str, Any]:
    """The environment `build-compiler` installs and pushes."""
    mirrors = {
        SOURCES_MIRROR: _mirror(f"file://{layout.SOURCE_MIRROR}", binary=False, source=True),
        LOCAL_BUILDCACHE_MIRROR: _mirror(
            f"file://{layout.BUILDCACHE}", binary=True, source=False, signed=request.signing_key is not None
        ),
    }
    if compiler_publishes_elsewhere(request):
        mirrors[PUBLISH_MIRROR] = _publish_mirror(request.publish_url, request.s3_endpoint_url)
    view = {"root": str(layout.SPACK_VIEW), "link_type": "copy"}
    return _gcc_environment(
        request.gcc_version, request.toolchain, request.arch, no_cache=request.no_cache, mirrors=mirrors, view=view
    )


def compiler_install_environment(request: BuildRequest) -> dict[str, Any]:
    """For `--compiler-version`: the GCC from the buildcache, linked into the fixed view the Slurm environment
    names as its compiler."""
    assert request.compiler_version is not None
    binary = {name: entry for name, entry in mirrors(request).items() if entry["binary"] and name != PUBLISH_MIRROR}
    view = {"root": str(layout.SPACK_COMPILER_VIEW), "link_type": "symlink"}
    return _gcc_environment(
        request.compiler_version, request.toolchain, request.arch, no_cache=request.no_cache, mirrors=binary, view=view
    )


def render_compiler_install_environment(request: BuildRequest) -> PlanFile:
    header = f"# GCC {request.compiler_version} from the buildcache, for the Slurm environment one level up.\n"
    return PlanFile(header + dump_spack_yaml(compiler_install_environment(request)))


def render_compiler_environment(request: CompilerRequest) -> PlanFile:
    header = (
        f"# Spack environment for GCC {request.gcc_version} on {request.toolchain.name}, generated by "
        f"slurm-factory {__version__}.\n"
    )
    return PlanFile(header + dump_spack_yaml(compiler_environment(request)))


def render_compiler_script(request: CompilerRequest) -> PlanFile:
    script = render(
        f"spack/{COMPILER_SCRIPT}.j2",
        **_step_names(layout.install_prefix(request.artifact_root)),
        gcc_version=request.gcc_version,
        toolchain=request.toolchain,
        view=layout.SPACK_VIEW,
        use_buildcache="never" if request.no_cache else "auto",
        fresh=request.no_cache,
        externals_file=EXTERNALS_FILE,
        concretizations=layout.CONCRETIZATIONS,
    )
    return PlanFile(script, mode=0o755)


def render_compiler_publish_script(request: CompilerRequest) -> PlanFile:
    script = render(
        f"spack/{COMPILER_PUBLISH_SCRIPT}.j2",
        **_step_names(layout.install_prefix(request.artifact_root)),
        **_secret_names(),
        gcc_version=request.gcc_version,
        local_mirror=LOCAL_BUILDCACHE_MIRROR,
        publish_mirror=PUBLISH_MIRROR if compiler_publishes_elsewhere(request) else None,
        signed=request.signing_key is not None,
    )
    return PlanFile(script, mode=0o755)
