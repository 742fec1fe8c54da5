"""The Spack engine for arm64 from an x86_64 host: Spack has no cross path, so every toolchain builds inside its arm64
image under qemu emulation, for the generic `aarch64` target (everything in the environment, and the GCC that
`build-compiler --arch arm64` pushes and `--compiler-version` installs). tests/spack/test_concretize.py concretizes
these environments with the real Spack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from slurm_factory.catalog import toolchain_names
from slurm_factory.catalog.toolchains import load_toolchains
from slurm_factory.choices import Arch
from slurm_factory.config import Settings
from slurm_factory.exceptions import ConfigurationError
from slurm_factory.plan import make_compiler_plan, make_plan
from slurm_factory.request import make_compiler_request, make_request
from tests.unit.test_spack_plan import GOLDEN, GOLDEN_FILES, _compare


@pytest.fixture(autouse=True)
def _amd64_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("slurm_factory.request.host_arch", lambda: Arch.AMD64)


def _settings(tmp_path: Path) -> Settings:
    return Settings(project_name="t", home=tmp_path)


def _environment(plan: Any, name: str = "spack.yaml") -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(plan.context_files()[name].content)["spack"]
    return document


@pytest.mark.parametrize("toolchain", toolchain_names())
def test_every_toolchain_plans_arm64_in_its_arm64_image_for_the_generic_target(toolchain: str, tmp_path: Path) -> None:
    request = make_request(slurm_version="24.11.5", toolchain=toolchain, engine="spack", arch="arm64")
    image = load_toolchains()[toolchain].arches["arm64"].base_image
    assert request.emulated and not request.cross and request.base_image == image
    plan = make_plan(request, _settings(tmp_path))
    assert f"\nFROM {image} AS toolchain\n" in plan.image.dockerfile
    assert plan.image.repository == f"t/toolchain-{toolchain}-arm64-spack"
    assert _environment(plan)["packages"]["all"]["require"] == ["target=aarch64"]
    assert plan.artifact_path.name == f"slurm-24.11-{toolchain}-arm64-software.tar.gz"


def test_amd64_keeps_its_target_image_and_names(tmp_path: Path) -> None:
    plan = make_plan(make_request(slurm_version="24.11.5", toolchain="trixie", engine="spack"), _settings(tmp_path))
    assert _environment(plan)["packages"]["all"]["require"] == ["target=x86_64_v2"]
    assert plan.image.repository == "t/toolchain-trixie-spack"
    assert "\nFROM debian:trixie AS toolchain\n" in plan.image.dockerfile


def test_arm64_and_amd64_spack_builds_have_different_ids_and_images(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    arm64 = make_plan(make_request(toolchain="noble", engine="spack", arch="arm64"), settings)
    amd64 = make_plan(make_request(toolchain="noble", engine="spack"), settings)
    assert arm64.build_id != amd64.build_id
    assert arm64.image.reference != amd64.image.reference


def test_arm64_spack_golden_files(tmp_path: Path) -> None:
    plan = make_plan(
        make_request(slurm_version="24.11.5", toolchain="trixie", engine="spack", arch="arm64"), _settings(tmp_path)
    )
    files = plan.context_files()
    _compare(GOLDEN / "trixie-arm64", {name: files[name].content for name in GOLDEN_FILES})


def test_emulate_is_implied_for_spack_and_accepted_when_given(tmp_path: Path) -> None:
    implied = make_request(toolchain="trixie", engine="spack", arch="arm64")
    given = make_request(toolchain="trixie", engine="spack", arch="arm64", emulate=True)
    assert implied == given


def test_build_compiler_for_arm64_builds_the_aarch64_gcc_in_the_arm64_image(tmp_path: Path) -> None:
    request = make_compiler_request(compiler_version="13.4.0", toolchain="rockylinux9", arch="arm64")
    assert request.emulated and request.base_image == "arm64v8/rockylinux:9"
    plan = make_compiler_plan(request, _settings(tmp_path))
    assert plan.artifact_path.name == "gcc-13.4.0-rockylinux9-arm64-compiler.tar.gz"
    assert plan.image.repository == "t/toolchain-rockylinux9-arm64-spack"
    assert _environment(plan)["packages"]["all"]["require"] == ["target=aarch64"]
    amd64 = make_compiler_plan(
        make_compiler_request(compiler_version="13.4.0", toolchain="rockylinux9"), _settings(tmp_path)
    )
    assert amd64.artifact_path.name == "gcc-13.4.0-rockylinux9-compiler.tar.gz"
    assert amd64.build_id != plan.build_id


def test_an_arm64_slurm_build_installs_the_gcc_that_build_compiler_arm64_pushes(tmp_path: Path) -> None:
    """Same specs, packages and target: the same hash, so the aarch64 GCC in the buildcache is the one installed."""
    slurm = make_plan(
        make_request(toolchain="rockylinux9", engine="spack", arch="arm64", compiler_version="13.4.0",
                     use_local_buildcache=True),
        _settings(tmp_path),
    )  # fmt: skip
    compiler = make_compiler_plan(
        make_compiler_request(compiler_version="13.4.0", toolchain="rockylinux9", arch="arm64"), _settings(tmp_path)
    )
    installed, pushed = _environment(slurm, "compiler/spack.yaml"), _environment(compiler)
    for key in ("specs", "packages", "repos", "concretizer"):
        assert installed[key] == pushed[key], key
    assert pushed["packages"]["all"]["require"] == ["target=aarch64"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"gpu": True}, "--gpu with --arch arm64 is not supported yet"),
        ({"arch": "s390x"}, "--arch 's390x' is invalid; valid values: amd64, arm64"),
    ],
)
def test_what_arm64_spack_cannot_do_is_refused_up_front(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        make_request(**{"toolchain": "trixie", "engine": "spack", "arch": "arm64", **options})
    assert message in str(caught.value)


def test_build_compiler_refuses_an_unknown_arch() -> None:
    with pytest.raises(ConfigurationError, match="valid values: amd64, arm64"):
        make_compiler_request(compiler_version="13.4.0", toolchain="trixie", arch="ppc64le")


def test_an_arm64_build_without_a_mirror_for_its_gcc_names_the_arm64_build_compiler() -> None:
    with pytest.raises(ConfigurationError) as caught:
        make_request(toolchain="trixie", engine="spack", arch="arm64", compiler_version="13.4.0")
    assert caught.value.hint is not None
    assert "build-compiler --compiler-version 13.4.0 --toolchain trixie --arch arm64`" in caught.value.hint
