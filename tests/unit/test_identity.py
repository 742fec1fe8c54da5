"""The build id: every input that changes the artifact's bytes changes it; what only acts on a finished artifact
(verify, signing, publishing) or on how it is built (`--no-cache`, where the source file lies) does not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from slurm_factory.config import Settings
from slurm_factory.plan import build_id, image_spec, make_plan
from slurm_factory.plan.model import PlanFile
from slurm_factory.request import make_request

NATIVE = {"slurm_version": "24.11.5", "toolchain": "trixie", "engine": "native"}
SPACK = {"slurm_version": "24.11.5", "toolchain": "trixie", "engine": "spack"}


def _id(settings: Settings, **options: Any) -> str:
    return make_plan(make_request(**options), settings).build_id


def test_the_same_request_has_the_same_id(settings: Settings) -> None:
    assert _id(settings, **NATIVE) == _id(settings, **NATIVE)


def test_the_project_name_does_not_change_the_id(settings: Settings, tmp_path: Path) -> None:
    other = Settings(project_name="another-project", home=tmp_path / "other-home", jobs=7)

    assert _id(settings, **NATIVE) == _id(other, **NATIVE)


@pytest.mark.parametrize(
    ("base", "extra"),
    [
        pytest.param(NATIVE, {"verify": True}, id="native-verify"),
        pytest.param(NATIVE, {"no_cache": True}, id="native-no-cache"),
        pytest.param(NATIVE, {"signing_key": "0x0123456789ABCDEF"}, id="native-signing-key"),
        pytest.param(NATIVE, {"signing_key": "0x0123456789ABCDEF", "publish": "slurm"}, id="native-publish"),
        pytest.param(
            NATIVE,
            {"signing_key": "0x0123456789ABCDEF", "publish": "slurm", "publish_url": "file:///srv/m"},
            id="native-publish-url",
        ),
        pytest.param(SPACK, {"verify": True}, id="spack-verify"),
        pytest.param(SPACK, {"no_cache": True}, id="spack-no-cache"),
        pytest.param(SPACK, {"signing_key": "0x0123456789ABCDEF", "publish": "all"}, id="spack-publish"),
    ],
)
def test_options_that_do_not_change_the_artifact_keep_the_id(
    settings: Settings, base: dict[str, Any], extra: dict[str, Any]
) -> None:
    assert _id(settings, **base, **extra) == _id(settings, **base)


def test_a_local_source_path_does_not_change_the_id(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "slurm.tar.gz").write_bytes(b"checked against the release's sha256 when the build starts")

    assert _id(settings, **NATIVE, slurm_source=str(tmp_path / "slurm.tar.gz")) == _id(settings, **NATIVE)


@pytest.mark.parametrize(
    ("base", "change"),
    [
        pytest.param(NATIVE, {"slurm_version": "24.11.6"}, id="release"),
        pytest.param(NATIVE, {"gpu": True}, id="gpu"),
        pytest.param(NATIVE, {"toolchain": "bookworm"}, id="toolchain"),
        pytest.param(NATIVE, {"engine": "spack"}, id="engine"),
        pytest.param(NATIVE, {"base_image": "mirror.invalid/debian:trixie"}, id="base-image"),
        pytest.param(SPACK, {"enable_hierarchy": True}, id="hierarchy"),
        pytest.param(SPACK, {"os_packages": "all"}, id="os-packages"),
        pytest.param(SPACK, {"buildcache": "deps"}, id="buildcache"),
    ],
)
def test_inputs_that_change_the_artifact_change_the_id(
    settings: Settings, base: dict[str, Any], change: dict[str, Any]
) -> None:
    assert _id(settings, **{**base, **change}) != _id(settings, **base)


def test_a_changed_rendered_file_or_toolchain_image_changes_the_id(settings: Settings) -> None:
    request = make_request(**NATIVE)
    image = image_spec("trixie", "native", "FROM debian:trixie\n", project_name="p")
    files = {"build-native.sh": PlanFile("make\n", mode=0o755)}
    reference = build_id(request, image, files)

    assert build_id(request, image, {"build-native.sh": PlanFile("make -j9\n", mode=0o755)}) != reference
    assert build_id(request, image, {"build-native.sh": PlanFile("make\n", mode=0o644)}) != reference
    assert (
        build_id(request, image_spec("trixie", "native", "FROM debian:trixie\nRUN x\n", project_name="p"), files)
        != reference
    )
    changed_context = image_spec(
        "trixie", "native", "FROM debian:trixie\n", project_name="p", context=({}, "spack v1.1.1")
    )
    assert build_id(request, changed_context, files) != reference
    assert (
        build_id(request, image_spec("trixie", "native", "FROM debian:trixie\n", project_name="other-project"), files)
        == reference
    )


def test_the_source_checksum_is_part_of_the_id(settings: Settings) -> None:
    request = make_request(**NATIVE)
    image = image_spec("trixie", "native", "FROM debian:trixie\n", project_name="p")
    other_source = request.model_copy(
        update={"slurm": request.slurm.__class__(**{**request.slurm.__dict__, "sha256": "0" * 64})}
    )

    assert build_id(other_source, image, {}) != build_id(request, image, {})
