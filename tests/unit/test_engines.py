"""The engine registry: one module per engine behind `BuildEngine`, asked by the request, plan, artifact and builder
instead of branches on the engine's name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from slurm_factory.choices import Engine, OsPackagesMode, PublishMode
from slurm_factory.config import Settings
from slurm_factory.engines import BuildEngine, engine_for, engine_kinds
from slurm_factory.exceptions import ConfigurationError
from slurm_factory.plan import make_plan
from slurm_factory.request import make_request

SOURCE = Path(__file__).parents[2] / "src" / "slurm_factory"


@pytest.mark.parametrize("kind", list(Engine))
def test_every_engine_choice_has_its_module_and_it_is_that_engine(kind: Engine) -> None:
    engine = engine_for(kind)

    assert isinstance(engine, BuildEngine)
    assert engine.kind is kind
    assert engine_for(kind.value) is engine
    assert kind in engine_kinds()


def test_every_engine_fills_the_same_manifest_fields() -> None:
    request = make_request(slurm_version="24.11.5", toolchain="trixie", engine="spack", enable_hierarchy=True)
    native = make_request(slurm_version="24.11.5", toolchain="trixie", engine="native")

    spack_fields = engine_for(Engine.SPACK).manifest_fields(request)
    native_fields = engine_for(Engine.NATIVE).manifest_fields(native)

    assert spack_fields.keys() == native_fields.keys()
    assert spack_fields == {"spack_compiler": "gcc@14.2.0", "os_packages": "build", "spack_modules": "hierarchy"}
    assert set(native_fields.values()) == {None}


def test_the_engines_differ_where_the_contract_says() -> None:
    native, spack = engine_for(Engine.NATIVE), engine_for(Engine.SPACK)

    assert (native.cross_compiles, spack.cross_compiles) == (True, False)
    assert (native.default_os_packages, spack.default_os_packages) == (OsPackagesMode.ALL, OsPackagesMode.BUILD)
    assert native.publishes_tarball(PublishMode.SLURM) and not spack.publishes_tarball(PublishMode.SLURM)
    assert native.publishes_tarball(PublishMode.ALL) and spack.publishes_tarball(PublishMode.ALL)
    with pytest.raises(ConfigurationError, match=r"^--python-wheels needs the Spack engine; the native engine"):
        native.refuse_spack_option("--python-wheels")
    spack.refuse_spack_option("--python-wheels")  # accepted: nothing raised


def test_a_spack_publish_runs_in_the_container_and_a_native_one_never(tmp_path: Path) -> None:
    spack_publish = make_request(toolchain="trixie", engine="spack", publish="slurm", signing_key="0x" + "A" * 16)
    native_publish = make_request(toolchain="trixie", engine="native", publish="slurm", signing_key="0x" + "A" * 16)

    assert engine_for(Engine.SPACK).publishes_in_container(spack_publish)
    assert not engine_for(Engine.NATIVE).publishes_in_container(native_publish)
    settings = Settings(project_name="engines", home=tmp_path)
    assert make_plan(spack_publish, settings).container.publish_command is not None
    assert make_plan(native_publish, settings).container.publish_command is None


def test_only_the_spack_engine_names_its_own_paths_in_the_build_paths(tmp_path: Path) -> None:
    settings = Settings(project_name="engines", home=tmp_path)
    native = make_plan(make_request(toolchain="trixie", engine="native"), settings)
    spack = make_plan(make_request(toolchain="trixie", engine="spack"), settings)

    assert engine_for(Engine.NATIVE).build_paths(native) == [str(native.container.install_prefix)]
    spack_paths = engine_for(Engine.SPACK).build_paths(spack)
    assert spack_paths[0] == str(spack.container.install_prefix)
    assert any("/spack" in path for path in spack_paths[1:])


def test_nothing_outside_the_engines_branches_on_an_engines_name() -> None:
    """The request, plan, artifact, builder, preflight, matrix, CLI and SBOM ask the engine; `Engine.X` appears
    outside engines/ only where a request is made for a fixed engine (build-compiler is Spack's)."""
    branch = re.compile(
        r"engine (?:is|is not|==|!=) Engine\.|Engine\.\w+ (?:is|==|!=|in)"  # the enum
        r"|engine(?:\.value|\"\)|'\]|\"\]) *(?:==|!=)"  # its value, or a manifest's "engine"
        r"|[\"'](?:native|spack)[\"'] (?:not )?in [\w.]*engines"  # the catalog's lists of engines
    )
    found = [
        f"{path.relative_to(SOURCE)}:{number}"
        for path in sorted(SOURCE.rglob("*.py"))
        if "engines" not in path.relative_to(SOURCE).parts
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if branch.search(line)
    ]
    assert found == []
