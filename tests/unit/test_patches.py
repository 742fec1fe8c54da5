"""Patches to Slurm's source: slurm-factory's own and a site's `--patch` files — read and checked when the request
is made, part of the build id, applied in order on the host before any container starts, refused with the file and
the first rejected hunk."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest

from slurm_factory.config import Settings
from slurm_factory.exceptions import EXIT_USAGE, ConfigurationError, PatchRejectedError
from slurm_factory.patches import build_patches, check_patches_apply, own_patches
from slurm_factory.plan import make_plan
from slurm_factory.request import make_request

pytestmark = pytest.mark.skipif(shutil.which("patch") is None, reason="GNU patch is needed to apply patches")

ORIGINAL = "int answer(void)\n{\n\treturn 41;\n}\n"


def _source(tmp_path: Path) -> Path:
    """A release-shaped tarball: one top-level directory holding src/answer.c."""
    tarball = tmp_path / "slurm.tar.gz"
    data = ORIGINAL.encode()
    with tarfile.open(tarball, "w:gz") as archive:
        info = tarfile.TarInfo("slurm-x/src/answer.c")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return tarball


def _patch(tmp_path: Path, name: str, old: str, new: str) -> Path:
    path = tmp_path / name
    path.write_text(
        "--- a/src/answer.c\n+++ b/src/answer.c\n@@ -1,4 +1,4 @@\n int answer(void)\n {\n"
        f"-\treturn {old};\n+\treturn {new};\n }}\n"
    )
    return path


def _site_only(paths: list[Path]) -> list:
    return [patch for patch in build_patches([str(path) for path in paths]) if patch.origin == "site"]


def test_site_patches_follow_ours_numbered_in_the_order_given(tmp_path: Path) -> None:
    second = _patch(tmp_path, "second.patch", "42", "43")
    first = _patch(tmp_path, "first.patch", "41", "42")

    patches = build_patches([str(first), str(second)])

    own = len(own_patches())
    assert [patch.origin for patch in patches] == ["slurm-factory"] * own + ["site", "site"]
    assert [patch.name for patch in patches[own:]] == [f"{own + 1:02d}-first.patch", f"{own + 2:02d}-second.patch"]


def test_site_patches_apply_in_order(tmp_path: Path) -> None:
    patches = _site_only([_patch(tmp_path, "a.patch", "41", "42"), _patch(tmp_path, "b.patch", "42", "43")])

    assert check_patches_apply(_source(tmp_path), patches, "24.11.5") is None


def test_a_patch_that_does_not_apply_is_refused_naming_it_and_its_first_rejected_hunk(tmp_path: Path) -> None:
    good = _patch(tmp_path, "good.patch", "41", "42")
    stale = _patch(tmp_path, "stale.patch", "7", "8")

    with pytest.raises(PatchRejectedError) as caught:
        check_patches_apply(_source(tmp_path), _site_only([good, stale]), "24.11.5")

    error = caught.value
    assert error.exit_code == EXIT_USAGE
    assert f"--patch '{stale.resolve()}' does not apply to Slurm 24.11.5" in error.message
    assert "src/answer.c: Hunk #1 FAILED at 1" in error.message
    assert error.hint is not None and error.hint.startswith("first rejected hunk: @@ -1,4 +1,4 @@")


def test_the_order_matters_when_patches_build_on_each_other(tmp_path: Path) -> None:
    first = _patch(tmp_path, "first.patch", "41", "42")
    second = _patch(tmp_path, "second.patch", "42", "43")

    with pytest.raises(PatchRejectedError, match=r"second\.patch"):
        check_patches_apply(_source(tmp_path), _site_only([second, first]), "24.11.5")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"just some text\n", "not a patch"),
        (b"--- a/x\n+++ b/x\n\xff\xfe\n", "not UTF-8 text"),
    ],
)
def test_a_file_that_is_not_a_patch_is_refused_when_the_request_is_made(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "x.patch"
    path.write_bytes(content)
    with pytest.raises(ConfigurationError, match=message):
        build_patches([str(path)])


def test_a_missing_patch_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no such file"):
        build_patches([str(tmp_path / "missing.patch")])


def test_a_patch_changes_the_build_id_and_is_in_the_plan_and_the_manifest_order(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", project_name="sf-test")
    options = {"slurm_version": "24.11.5", "toolchain": "trixie", "engine": "native"}
    fix = _patch(tmp_path, "fix.patch", "41", "42")

    plain = make_plan(make_request(**options), settings)
    patched = make_plan(make_request(**options, patches=[str(fix)]), settings)
    fix.write_text(fix.read_text().replace("42", "44"))
    changed = make_plan(make_request(**options, patches=[str(fix)]), settings)

    assert len({plain.build_id, patched.build_id, changed.build_id}) == 3
    name = f"patches/{len(own_patches()) + 1:02d}-fix.patch"
    assert patched.context_files()[name].content == _patch(tmp_path, "again.patch", "41", "42").read_text()
    script = patched.context_files()["build-native.sh"].content
    assert script.index("01-relocatable-plugin-dir.patch") < script.index(name)


def test_a_patch_list_given_as_one_string_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"patches='fix.patch': expected a list"):
        make_request(slurm_version="24.11.5", toolchain="trixie", engine="native", patches="fix.patch")  # type: ignore[typeddict-item]


def test_a_patch_that_needs_fuzz_is_refused(tmp_path: Path) -> None:
    """A hotfix whose context does not match exactly is not applied somewhere nearby."""
    context_off = tmp_path / "context.patch"
    context_off.write_text(
        "--- a/src/answer.c\n+++ b/src/answer.c\n@@ -1,4 +1,4 @@\n int Answer(void)\n {\n-\treturn 41;\n"
        "+\treturn 42;\n }\n"
    )

    with pytest.raises(PatchRejectedError, match=r"context\.patch.*Hunk #1 FAILED"):
        check_patches_apply(_source(tmp_path), _site_only([context_off]), "24.11.5")


def test_a_patch_already_in_the_source_says_so(tmp_path: Path) -> None:
    patch = _patch(tmp_path, "twice.patch", "41", "42")
    with pytest.raises(PatchRejectedError, match="already in the source"):
        check_patches_apply(_source(tmp_path), _site_only([patch, patch]), "24.11.5")


def test_garbage_with_a_diff_header_says_what_patch_found(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.patch"
    garbage.write_text("--- a/src/answer.c\n+++ b/src/answer.c\nthis is no hunk\n")
    with pytest.raises(PatchRejectedError, match=r"garbage|no hunk"):
        check_patches_apply(_source(tmp_path), _site_only([garbage]), "24.11.5")
