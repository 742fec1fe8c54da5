"""Base images pinned on first use: the image id a base image reference (`debian:trixie`) named when a toolchain
image was built from it, recorded in `<home>/base-images.json`.

A tag moves (a distribution refreshes its images); an artifact claims to be reproducible from its inputs. So each
toolchain image is built from an image whose id is known (pulled first when the engine has none), carries that id
as a label, and every manifest records it (`toolchain.base_image_id`); an existing toolchain image is reused, so a
moved tag does not change the bytes of a request until `--no-cache` rebuilds it. The record is what `--dry-run`
and the build log compare the tag's current image with, to say when it moved; building from a moved tag records
the new id. A reference with an `@sha256:` digest is pinned by its content and never recorded.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from slurm_factory.build_lock import exclusive
from slurm_factory.exceptions import ConfigurationError

PINS_FILE = "base-images.json"
# The toolchain image's label holding the id of the base image it was built from.
BASE_IMAGE_ID_LABEL = "org.slurm-factory.base-image-id"


@dataclass(frozen=True)
class BaseImagePin:
    """The image id `reference` named when it was pinned, and the day."""

    reference: str
    image_id: str
    pinned_on: str


def pins_path(home: Path) -> Path:
    return home / PINS_FILE


def pinned_by_digest(reference: str) -> bool:
    return "@sha256:" in reference


def load_pins(home: Path) -> dict[str, BaseImagePin]:
    """The pins of this home (none when the file is not there); a file that is not ours is refused, naming it."""
    path = pins_path(home)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigurationError(f"{path}: cannot read the base image pins: {error}") from None
    try:
        document = json.loads(text)
        pins = {
            reference: BaseImagePin(reference, str(entry["image_id"]), str(entry["pinned_on"]))
            for reference, entry in document["pins"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ConfigurationError(
            f"{path} is not a base image pins file",
            hint="remove it: the next build pins the base images it uses anew",
        ) from None
    return pins


def _write_pins(home: Path, pins: dict[str, BaseImagePin]) -> None:
    document = {
        "pins": {
            reference: {"image_id": pin.image_id, "pinned_on": pin.pinned_on} for reference, pin in sorted(pins.items())
        }
    }
    home.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=home, prefix=f".{PINS_FILE}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(document, stream, indent=2)
            stream.write("\n")
        os.replace(temporary, pins_path(home))
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def pin(home: Path, reference: str, image_id: str, *, lock_dir: Path) -> BaseImagePin | None:
    """Pin `reference` to `image_id` unless it is pinned already; a pin to another id is replaced (the toolchain
    image was just built from the new one) and returned, so the caller can say the tag moved."""
    if pinned_by_digest(reference):
        return None
    with exclusive(lock_dir / "base-images.lock", "updates the base image pins", lambda _message: None):
        pins = load_pins(home)
        previous = pins.get(reference)
        if previous is not None and previous.image_id == image_id:
            return None
        pins[reference] = BaseImagePin(reference, image_id, dt.datetime.now(dt.UTC).date().isoformat())
        _write_pins(home, pins)
        return previous


def short_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def describe(reference: str, pinned: BaseImagePin | None, current_id: str | None, *, building: bool = False) -> str:
    """The base image in one sentence: as recorded, moved, not recorded yet, or not here. `building`: said while
    a toolchain image is built from it."""
    if pinned_by_digest(reference):
        return f"{reference} is pinned by its digest"
    if current_id is None:
        where = f"recorded as {short_id(pinned.image_id)} on {pinned.pinned_on}; " if pinned else ""
        return f"{reference}: {where}not on this Docker engine (the build pulls it)"
    if pinned is None:
        return f"{reference} is {short_id(current_id)}; the first toolchain image built from it records that id"
    if pinned.image_id == current_id:
        return f"{reference} is {short_id(current_id)}, as recorded on {pinned.pinned_on}"
    moved = (
        f"{reference} moved: it was {short_id(pinned.image_id)} when recorded on {pinned.pinned_on}, it now names "
        f"{short_id(current_id)}"
    )
    if building:
        return f"{moved}, which this toolchain image is built from"
    return f"{moved}; the next toolchain image built from it (--no-cache, or a changed toolchain) records that id"


def toolchain_image_note(built_from: str, current_id: str | None) -> str:
    """What the existing toolchain image was built from, against what the tag names now."""
    if built_from == current_id:
        return "the toolchain image was built from it"
    return (
        f"the existing toolchain image was built from {short_id(built_from)} and is reused, so the bytes stay the "
        "same (--no-cache rebuilds it from the tag)"
    )
