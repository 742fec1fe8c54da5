"""Base images pinned on first use (base_images.py): the pins file, a moved tag, a digest, a file that is not ours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slurm_factory.base_images import describe, load_pins, pin, pins_path, toolchain_image_note
from slurm_factory.exceptions import ConfigurationError

OLD = "sha256:" + "1" * 64
NEW = "sha256:" + "2" * 64


def test_the_first_build_pins_the_id_and_the_same_id_again_changes_nothing(tmp_path: Path) -> None:
    assert pin(tmp_path, "debian:trixie", OLD, lock_dir=tmp_path) is None
    written = pins_path(tmp_path).read_bytes()

    assert pin(tmp_path, "debian:trixie", OLD, lock_dir=tmp_path) is None
    assert pins_path(tmp_path).read_bytes() == written
    pinned = load_pins(tmp_path)["debian:trixie"]
    assert pinned.image_id == OLD
    assert describe("debian:trixie", pinned, OLD) == f"debian:trixie is {'1' * 12}, as recorded on {pinned.pinned_on}"


def test_a_moved_tag_is_said_and_pinned_anew_keeping_the_other_pins(tmp_path: Path) -> None:
    pin(tmp_path, "debian:trixie", OLD, lock_dir=tmp_path)
    pin(tmp_path, "ubuntu:noble", OLD, lock_dir=tmp_path)
    before = load_pins(tmp_path)["debian:trixie"]

    moved = f"debian:trixie moved: it was {'1' * 12} when recorded on {before.pinned_on}, it now names {'2' * 12}"
    assert describe("debian:trixie", before, NEW).startswith(moved + "; the next toolchain image built from it")
    assert describe("debian:trixie", before, NEW, building=True) == moved + ", which this toolchain image is built from"
    previous = pin(tmp_path, "debian:trixie", NEW, lock_dir=tmp_path)

    assert previous == before
    pins = load_pins(tmp_path)
    assert (pins["debian:trixie"].image_id, pins["ubuntu:noble"].image_id) == (NEW, OLD)


def test_a_reference_with_a_digest_is_never_written_to_the_pins(tmp_path: Path) -> None:
    reference = "debian@sha256:" + "3" * 64

    assert pin(tmp_path, reference, OLD, lock_dir=tmp_path) is None
    assert not pins_path(tmp_path).exists()
    assert describe(reference, None, OLD) == f"{reference} is pinned by its digest"


def test_an_image_not_on_the_engine_and_one_not_pinned_yet_are_said_so(tmp_path: Path) -> None:
    absent = describe("debian:trixie", None, None)
    assert absent == "debian:trixie: not on this Docker engine (the build pulls it)"
    first = describe("debian:trixie", None, NEW)
    assert first == f"debian:trixie is {'2' * 12}; the first toolchain image built from it records that id"


def test_a_reused_toolchain_image_older_than_the_tag_is_said_to_keep_the_bytes() -> None:
    assert toolchain_image_note(OLD, OLD) == "the toolchain image was built from it"
    assert toolchain_image_note(OLD, NEW).startswith(f"the existing toolchain image was built from {'1' * 12} and is")


@pytest.mark.parametrize("content", ["not json", "[]", '{"pins": {"debian:trixie": {"image_id": 1}}}'])
def test_a_pins_file_that_is_not_ours_is_refused_naming_it(tmp_path: Path, content: str) -> None:
    pins_path(tmp_path).write_text(content, encoding="utf-8")

    with pytest.raises(ConfigurationError, match="is not a base image pins file") as caught:
        load_pins(tmp_path)
    assert str(pins_path(tmp_path)) in str(caught.value)


def test_the_pins_file_is_plain_json_a_site_can_read(tmp_path: Path) -> None:
    pin(tmp_path, "debian:trixie", OLD, lock_dir=tmp_path)

    document = json.loads(pins_path(tmp_path).read_text(encoding="utf-8"))
    assert document["pins"]["debian:trixie"]["image_id"] == OLD
    assert not [path.name for path in tmp_path.iterdir() if path.name.startswith(".base-images")]
