"""`--os-packages none|build|all` and `--spack-packages FILE`: what the Spack environment takes from the toolchain OS,
what a site's packages.yaml changes, and the detection step's own logic (versions, runtime packages)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from slurm_factory import cli
from slurm_factory.catalog import load_toolchains
from slurm_factory.catalog.os_packages import OsPackagesMode, known_names, os_externals
from slurm_factory.config import Settings
from slurm_factory.exceptions import EXIT_USAGE, ConfigurationError
from slurm_factory.plan import make_plan, spack
from slurm_factory.request import make_request

BUILD_TOOLS = {"cmake", "autoconf", "automake", "libtool", "m4", "bison", "flex", "gmake", "pkgconf", "perl", "python"}
LIBRARIES = {"munge", "pmix", "hwloc", "json-c", "libyaml", "libjwt", "lua", "mariadb", "curl", "openssl", "openmpi"}


def _files(tmp_path: Path, **options: Any) -> dict[str, str]:
    request = make_request(slurm_version="24.11.5", engine="spack", **options)
    plan = make_plan(request, Settings(project_name="os-packages", home=tmp_path))
    return {name: plan_file.content for name, plan_file in plan.context_files().items()}


def _environment(tmp_path: Path, **options: Any) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(_files(tmp_path, **options)["spack.yaml"])
    return document["spack"]


def _not_buildable(environment: dict[str, Any]) -> set[str]:
    return {name for name, entry in environment["packages"].items() if entry.get("buildable") is False}


def _detected(tmp_path: Path, **options: Any) -> dict[str, Any]:
    plan: dict[str, Any] = json.loads(_files(tmp_path, **options)[spack.OS_EXTERNALS_PLAN])
    return plan


def test_none_takes_only_the_compiler_from_the_os(tmp_path: Path) -> None:
    environment = _environment(tmp_path, toolchain="trixie", os_packages="none")
    files = _files(tmp_path, toolchain="trixie", os_packages="none")
    assert _not_buildable(environment) == {"gcc"}
    assert "include" not in environment
    assert spack.OS_EXTERNALS_PLAN not in files
    assert "stage externals" not in files["build-spack.sh"]
    assert "openmpi schedulers=slurm" in environment["specs"]


def test_build_is_the_default_and_takes_build_tools_but_no_linked_library(tmp_path: Path) -> None:
    default = _environment(tmp_path, toolchain="trixie")
    assert default == _environment(tmp_path, toolchain="trixie", os_packages="build")
    not_buildable = _not_buildable(default)
    assert not_buildable >= BUILD_TOOLS | {"pkgconfig", "yacc"}
    assert not not_buildable & LIBRARIES, "every library linked into the artifact is built by Spack"
    assert default["include"] == [{"path": spack.EXTERNALS_FILE, "optional": True}]
    assert "openmpi schedulers=slurm" in default["specs"], "Spack builds Open MPI with Slurm support"
    plan = _detected(tmp_path, toolchain="trixie")
    assert {entry["kind"] for entry in plan["externals"]} == {"build"}
    assert plan["family"] == "apt"


def test_all_takes_every_library_the_os_packages_and_the_virtuals_they_provide(tmp_path: Path) -> None:
    environment = _environment(tmp_path, toolchain="trixie", os_packages="all")
    assert _not_buildable(environment) >= BUILD_TOOLS | LIBRARIES | {"mpi", "zlib-api", "lua-lang"}
    assert environment["specs"][1] == "mpi", "the OS's MPI is what it is: any provider, not a Spack build"
    externals = {
        entry["name"]: entry for entry in _detected(tmp_path, toolchain="trixie", os_packages="all")["externals"]
    }
    assert externals["pmix"]["prefix"] == "/usr/lib/{multiarch}/pmix2"
    assert externals["pmix"]["os_packages"] == ["libpmix-dev"]
    assert externals["munge"]["kind"] == "library"
    assert externals["openmpi"]["detect"] is False
    assert "cuda" not in externals, "GPU vendor libraries only with --gpu"


def test_all_on_an_rpm_toolchain_uses_its_package_names_and_prefixes(tmp_path: Path) -> None:
    externals = {e["name"]: e for e in _detected(tmp_path, toolchain="rockylinux9", os_packages="all")["externals"]}
    assert externals["munge"]["os_packages"] == ["munge-devel", "munge"]
    assert externals["openmpi"]["prefix"] == "/usr/lib64/openmpi"
    assert externals["pmix"]["prefix"] == "/usr"
    assert _detected(tmp_path, toolchain="rockylinux9", os_packages="all")["family"] == "dnf"


def test_a_toolchain_override_replaces_the_family_names_or_leaves_the_package_to_spack(tmp_path: Path) -> None:
    jammy = {e["name"]: e for e in _detected(tmp_path, toolchain="jammy", os_packages="all")["externals"]}
    assert jammy["lua"]["os_packages"] == ["liblua5.3-dev"]
    rocky10 = {e["name"] for e in _detected(tmp_path, toolchain="rockylinux10", os_packages="all")["externals"]}
    assert "http-parser" not in rocky10
    assert "http-parser" not in _not_buildable(_environment(tmp_path, toolchain="rockylinux10", os_packages="all"))
    rocky8 = {e["name"]: e for e in _detected(tmp_path, toolchain="rockylinux8")["externals"]}
    assert rocky8["python"]["os_packages"] == ["python39"]


def test_gpu_with_all_takes_the_vendor_headers_where_the_os_packages_them(tmp_path: Path) -> None:
    trixie = {e["name"]: e for e in _detected(tmp_path, toolchain="trixie", os_packages="all", gpu=True)["externals"]}
    assert trixie["cuda"]["os_packages"] == ["libnvidia-ml-dev"]
    assert trixie["cuda"]["kind"] == "gpu"
    rocky = {e["name"] for e in _detected(tmp_path, toolchain="rockylinux9", os_packages="all", gpu=True)["externals"]}
    assert "cuda" not in rocky


@pytest.mark.parametrize("toolchain", sorted(load_toolchains()))
def test_every_toolchain_override_names_a_package_the_catalog_knows(toolchain: str) -> None:
    assert set(load_toolchains()[toolchain].spack.os_packages) <= known_names()


@pytest.mark.parametrize("mode", list(OsPackagesMode))
@pytest.mark.parametrize("toolchain", sorted(load_toolchains()))
def test_the_image_installs_every_os_package_of_the_mode(toolchain: str, mode: OsPackagesMode, tmp_path: Path) -> None:
    dockerfile = _files(tmp_path, toolchain=toolchain, os_packages=mode.value)["Dockerfile"]
    for external in os_externals(load_toolchains()[toolchain], mode):
        for package in external.os_packages:
            assert f"        {package} \\\n" in dockerfile, (external.name, package)


def test_each_mode_has_its_own_toolchain_image(tmp_path: Path) -> None:
    settings = Settings(project_name="os-packages", home=tmp_path)
    tags = {
        mode: make_plan(make_request(toolchain="trixie", os_packages=mode), settings).image.reference
        for mode in ("none", "build", "all")
    }
    assert len(set(tags.values())) == 3


def test_the_native_engine_refuses_os_packages_and_site_files(tmp_path: Path) -> None:
    site = tmp_path / "packages.yaml"
    site.write_text("packages:\n  openmpi: {buildable: false}\n")
    with pytest.raises(ConfigurationError, match="--os-packages needs the Spack engine"):
        make_request(engine="native", toolchain="trixie", os_packages="all")
    with pytest.raises(ConfigurationError, match="--spack-packages needs the Spack engine"):
        make_request(engine="native", toolchain="trixie", spack_packages=str(site))


def test_an_unknown_mode_names_the_valid_ones() -> None:
    with pytest.raises(ConfigurationError, match="--os-packages 'some' is invalid; valid values: none, build, all"):
        make_request(toolchain="trixie", os_packages="some")


# --- a site's packages.yaml ----------------------------------------------------------------------------------------

SITE = """\
packages:
  openmpi:
    externals:
    - spec: openmpi@4.1.6 fabrics=ucx schedulers=slurm
      prefix: /opt/site/openmpi
    buildable: false
  ucx:
    require: "@1.16: +verbs"
  lz4:
    buildable: true
"""


def _site(tmp_path: Path, text: str = SITE) -> str:
    path = tmp_path / "site-packages.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_site_file_is_merged_over_the_generated_packages(tmp_path: Path) -> None:
    environment = _environment(tmp_path, toolchain="trixie", os_packages="all", spack_packages=_site(tmp_path))
    packages = environment["packages"]
    assert packages["openmpi"]["externals"] == [
        {"spec": "openmpi@4.1.6 fabrics=ucx schedulers=slurm", "prefix": "/opt/site/openmpi"}
    ]
    assert packages["ucx"] == {"require": "@1.16: +verbs"}
    assert packages["lz4"] == {"buildable": True}, "the site's value replaces ours"
    assert packages["gcc"]["buildable"] is False, "what the site does not name stays as generated"
    assert environment["specs"][1] == "mpi"


def test_packages_the_site_decides_are_not_taken_from_the_os(tmp_path: Path) -> None:
    detected = _detected(tmp_path, toolchain="trixie", os_packages="all", spack_packages=_site(tmp_path))
    names = {entry["name"] for entry in detected["externals"]}
    assert "openmpi" not in names and "lz4" not in names
    assert {"munge", "pmix"} <= names


def test_a_site_file_with_only_preferences_keeps_spack_building_open_mpi(tmp_path: Path) -> None:
    site = _site(tmp_path, "packages:\n  openmpi:\n    variants: +cuda\n")
    environment = _environment(tmp_path, toolchain="trixie", spack_packages=site)
    assert environment["specs"][1] == "openmpi schedulers=slurm"
    assert environment["packages"]["openmpi"] == {"variants": "+cuda"}


def test_site_spec_strings_are_written_double_quoted(tmp_path: Path) -> None:
    text = _files(tmp_path, toolchain="trixie", spack_packages=_site(tmp_path))["spack.yaml"]
    assert '- spec: "openmpi@4.1.6 fabrics=ucx schedulers=slurm"' in text
    assert 'require: "@1.16: +verbs"' in text


def test_the_site_file_changes_the_build_id(tmp_path: Path) -> None:
    settings = Settings(project_name="os-packages", home=tmp_path)
    plain = make_plan(make_request(toolchain="trixie"), settings)
    site = make_plan(make_request(toolchain="trixie", spack_packages=_site(tmp_path)), settings)
    assert plain.build_id != site.build_id
    assert plain.image.reference == site.image.reference, "one image serves every site"


BAD_SITE_FILES = [
    pytest.param("packages:\n  openmpi: [\n", "not valid YAML (line 3, column 1", id="yaml-syntax"),
    pytest.param("openmpi:\n  buildable: false\n", "the top level must be exactly one key, `packages:`", id="no-top"),
    pytest.param("packages::\n  openmpi: {}\n", "`packages::` would replace the generated settings", id="override"),
    pytest.param("packages: {}\n", "`packages:` must map at least one package", id="empty"),
    pytest.param("packages:\n  openmpi: mpich\n", "packages:openmpi must be a mapping, not str", id="not-mapping"),
    pytest.param("packages:\n  openmpi:\n    buildabel: false\n", "unknown key(s) buildabel", id="typo"),
    pytest.param("packages:\n  openmpi:\n    buildable: no-way\n", "buildable must be true or false", id="buildable"),
    pytest.param(
        "packages:\n  openmpi:\n    externals:\n    - prefix: /opt/mpi\n", "externals[0] has no `spec`", id="no-spec"
    ),
    pytest.param(
        "packages:\n  openmpi:\n    externals:\n    - spec: openmpi@5\n",
        "needs a `prefix` (or `modules`)",
        id="no-prefix",
    ),
    pytest.param("", "the top level must be exactly one key", id="empty-file"),
]


@pytest.mark.parametrize(("text", "message"), BAD_SITE_FILES)
def test_a_bad_site_file_is_refused_naming_the_file_and_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = _site(tmp_path, text)
    with pytest.raises(ConfigurationError) as caught:
        make_request(toolchain="trixie", spack_packages=path)
    assert str(caught.value).startswith(f"--spack-packages {path}: ")
    assert message in str(caught.value)


def test_a_missing_or_directory_site_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no such file"):
        make_request(toolchain="trixie", spack_packages=str(tmp_path / "absent.yaml"))
    with pytest.raises(ConfigurationError, match="is a directory"):
        make_request(toolchain="trixie", spack_packages=str(tmp_path))


def test_the_cli_refuses_a_bad_site_file_with_exit_2_before_docker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    path = _site(tmp_path, "packages:\n  openmpi: [\n")
    result = CliRunner().invoke(cli.app, ["build-slurm", "--toolchain", "trixie", "--spack-packages", path])
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.splitlines()[0].startswith(f"error: --spack-packages {path}: not valid YAML (line 3")
    assert "Traceback" not in result.output


def test_dry_run_shows_which_packages_come_from_the_os(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli.app, ["build-slurm", "--toolchain", "trixie", "--os-packages", "all", "--dry-run", "--gpu"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.startswith("# os       --os-packages all: ") for line in lines)
    library = next(line for line in lines if line.startswith("# external library: "))
    assert "pmix (libpmix-dev)" in library and "munge (libmunge-dev munge)" in library
    assert next(line for line in lines if line.startswith("# external gpu: ")).endswith(
        "cuda (libnvidia-ml-dev), rocm-smi-lib (librocm-smi-dev)"
    )


# --- the detection step (templates/spack/detect_externals.py), run by `spack python` in the container -------------


@pytest.fixture(scope="module")
def detection() -> ModuleType:
    path = Path(spack.__file__).parent.parent / "templates" / "spack" / spack.DETECT_EXTERNALS_SCRIPT
    loaded = importlib.util.spec_from_file_location("detect_externals", path)
    assert loaded is not None and loaded.loader is not None
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("os_version", "upstream"),
    [
        ("1:1.3.dfsg+really1.3.1-1+deb13u1", "1.3.1"),
        ("0.18+ds-1", "0.18"),
        ("2.1.13-stable-1~deb13u1", "2.1.13"),
        ("1:11.8.9+ds-0+deb13u1", "11.8.9"),
        ("2.12.7+dfsg+really2.9.14-2.1+deb13u3", "2.9.14"),
        ("6.5+20250216-2", "6.5"),
        ("2:3.8.2+dfsg-1+b2", "3.8.2"),
        ("5.0.7", "5.0.7"),
        ("1.1.1k", "1.1.1k"),
    ],
)
def test_os_package_versions_become_upstream_versions(detection: ModuleType, os_version: str, upstream: str) -> None:
    assert detection.upstream_version(os_version) == upstream


def test_an_unreadable_version_stops_the_detection(detection: ModuleType) -> None:
    with pytest.raises(SystemExit, match="cannot read an upstream version from 'unknown'"):
        detection.upstream_version("unknown")
