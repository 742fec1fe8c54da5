"""Base images pinned on first use: the image id a base image reference (`debian:trixie`) named when a toolchain
image was first built from it, kept in `<home>/base-images.json`.

A tag moves (a distribution refreshes its images); an artifact claims to be reproducible from its inputs. So the
first build from a tag records the image id it saw; later builds and `--dry-run` compare the tag's current image
with that pin and say when it moved. Each toolchain image carries the id of the base it was built from (a label),
and every manifest records it (`toolchain.base_image_id`). A reference with an `@sha256:` digest is pinned by its
content already. The pins file is the site's: delete an entry (or the file) to accept a moved tag silently.
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


def describe(reference: str, pinned: BaseImagePin | None, current_id: str | None) -> str:
    """The base image in one sentence: pinned and unchanged, moved, new, or not here."""
    if pinned_by_digest(reference):
        return f"{reference} is pinned by its digest"
    if current_id is None:
        where = f"pinned to {short_id(pinned.image_id)} on {pinned.pinned_on}; " if pinned else ""
        return f"{reference}: {where}not on this Docker engine (the image build pulls it)"
    if pinned is None:
        return f"{reference} is {short_id(current_id)}; the first build from it pins that id"
    if pinned.image_id == current_id:
        return f"{reference} is {short_id(current_id)}, as pinned on {pinned.pinned_on}"
    return (
        f"{reference} moved: pinned to {short_id(pinned.image_id)} on {pinned.pinned_on}, it now names "
        f"{short_id(current_id)}; a new toolchain image is built from it (and pinned) the next time one is built"
    )
