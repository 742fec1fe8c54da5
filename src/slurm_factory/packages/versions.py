"""How a native package's version is spelled, so that apt (and dpkg) order every build correctly.

`<upstream>-<release>+sf.<codename>`, e.g. `24.11.5-1+sf.trixie`:

- `<upstream>` is the Slurm release (`24.11.5`); a SchedMD re-tag of the same release (`24-11-5-2`) adds
  `+tag2`, which sorts above the first tag and below the next patch release (`24.11.5+tag2` < `24.11.6`).
- `<release>` is `--package-release N` (default 1): a rebuild of the same Slurm with other packaging, patches or
  flags bumps it, and `24.11.5-2+…` replaces `24.11.5-1+…` on `apt upgrade`.
- `+sf.<codename>` names slurm-factory and the distribution the package was built for: the same release built for
  two codenames gets two file names in one pool, and it sorts above SchedMD's own `24.11.5-1` of the same name
  (a site that switches from SchedMD's packages to these upgrades instead of downgrading).

No epoch: the packages are SchedMD's names (`slurm-smd-*`), not the distribution's (`slurmctld`, `slurm-client`),
so apt never compares their versions with Debian's `slurm-wlm`; `Conflicts`/`Replaces` make the switch between the
two explicit instead. An epoch would be forever and would hide a real downgrade.
"""

from __future__ import annotations

import re

from slurm_factory.catalog.releases import SlurmRelease
from slurm_factory.exceptions import ConfigurationError

DEFAULT_RELEASE = 1
MAX_RELEASE = 9999


def upstream_version(slurm: SlurmRelease) -> str:
    """The Slurm release as a Debian upstream version (`24.11.5`, or `24.11.5+tag2` for a second tag)."""
    tag_revision = slurm.key[3]
    return slurm.version if tag_revision <= 1 else f"{slurm.version}+tag{tag_revision}"


def debian_version(slurm: SlurmRelease, *, release: int, codename: str) -> str:
    """The full Debian version of every package of one build (`24.11.5-1+sf.trixie`)."""
    return f"{upstream_version(slurm)}-{release}+sf.{codename}"


def check_package_release(value: object) -> int:
    """`--package-release N`: a whole number from 1 to MAX_RELEASE."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigurationError(f"--package-release {value!r}: expected a whole number, e.g. 2")
    text = str(value)
    if not re.fullmatch(r"[1-9][0-9]{0,3}", text):  # ASCII digits only, no sign, space or leading zero
        raise ConfigurationError(
            f"--package-release {text or repr(value)}: expected a whole number from 1 to {MAX_RELEASE}",
            hint="bump it by one for each rebuild of the same Slurm release",
        )
    return int(text)


def _character_order(character: str) -> int:
    """dpkg's order of the non-digit parts: `~` before the end, the end before letters, letters before the rest."""
    if character == "~":
        return -1
    if character.isalpha():
        return ord(character)
    return ord(character) + 256


def _compare_fragment(left: str, right: str) -> int:
    """dpkg's comparison of an upstream version or a revision: alternating non-digit and digit runs."""
    left_index = right_index = 0
    while left_index < len(left) or right_index < len(right):
        while (left_index < len(left) and not left[left_index].isdigit()) or (
            right_index < len(right) and not right[right_index].isdigit()
        ):
            left_order = (
                _character_order(left[left_index]) if left_index < len(left) and not left[left_index].isdigit() else 0
            )
            right_order = (
                _character_order(right[right_index])
                if right_index < len(right) and not right[right_index].isdigit()
                else 0
            )
            if left_order != right_order:
                return -1 if left_order < right_order else 1
            left_index += 1
            right_index += 1
        left_start, right_start = left_index, right_index
        while left_index < len(left) and left[left_index].isdigit():
            left_index += 1
        while right_index < len(right) and right[right_index].isdigit():
            right_index += 1
        left_number = int(left[left_start:left_index] or 0)
        right_number = int(right[right_start:right_index] or 0)
        if left_number != right_number:
            return -1 if left_number < right_number else 1
    return 0


def _split_version(version: str) -> tuple[int, str, str]:
    epoch, _, rest = version.rpartition(":") if ":" in version else ("0", "", version)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "0")
    return int(epoch or 0), upstream, revision


def compare_versions(left: str, right: str) -> int:
    """-1, 0 or 1 as `dpkg --compare-versions left lt|eq|gt right` would answer (the ordering apt upgrades by)."""
    left_epoch, left_upstream, left_revision = _split_version(left)
    right_epoch, right_upstream, right_revision = _split_version(right)
    if left_epoch != right_epoch:
        return -1 if left_epoch < right_epoch else 1
    return _compare_fragment(left_upstream, right_upstream) or _compare_fragment(left_revision, right_revision)
