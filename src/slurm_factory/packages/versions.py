"""How a native package's version is spelled, so that apt (and dpkg) and dnf (and rpm) order every build correctly.

.deb: `<upstream>-<release>+sf.<codename>`, e.g. `24.11.5-1+sf.trixie`:

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

.rpm: `Version: <upstream>`, `Release: <release>.sf<dist>`, e.g. `24.11.5-1.sf.el9` (`slurm-smd-24.11.5-1.sf.el9`):

- `Version` is the same upstream version as the .deb's, re-tag included (`24.11.5+tag2`): rpm reads `+` as a
  separator, so `24.11.5+tag2` is `24.11.5` with a segment more, above it and below `24.11.6` (`~` and `^` would
  say the same more idiomatically, but `^` needs rpm 4.15 and Rocky 8 has 4.14). Patch releases sort numerically
  segment by segment (`24.11.10` > `24.11.9`).
- `Release` starts with `--package-release N`, compared as a number (`10.sf.el9` > `9.sf.el9`), so a rebuild is
  the first thing that tells two builds of one Slurm apart, as in the .deb's revision.
- `sf` (slurm-factory) follows: an alphabetic segment that sorts above the distribution's dist tag at the same
  place, so `24.11.5-1.sf.el9` is newer than SchedMD's own `rpmbuild -ta` of the release (`24.11.5-1.el9`) and
  EPEL's of the same version and release number, and older than their `-2`.
- `<dist>` is fixed by the toolchain (`.el9` on rockylinux9, data in catalog/data/rpm_packages.yaml), not taken from
  the build image's `%{dist}`: Rocky's own tag names the minor release for updates (`.el9_4`, `.el10_0`), which would
  give one request other file names as the image moves. The spec defines `%dist` itself, so the rendered plan is
  the whole truth about the package's name. Built for two majors, the same release is two names in one repository,
  and the older major sorts first (`1.sf.el8` < `1.sf.el9`): an in-place upgrade of the OS takes the new build.

No epoch here either: the names (`slurm-smd-*`) are not EPEL's or SchedMD's rpm names (`slurm`, `slurm-slurmd`),
so dnf never weighs these against theirs; `Conflicts:` makes a switch explicit (`dnf swap`).
"""

from __future__ import annotations

import re

from slurm_factory.catalog.releases import SlurmRelease
from slurm_factory.exceptions import ConfigurationError, quoted

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
            f"--package-release {quoted(text) if text else repr(value)}: expected a whole number from 1 to "
            f"{MAX_RELEASE}",
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


# rpm: the marker that follows the release number in Release (`1.sf.el9`).
RPM_RELEASE_MARKER = "sf"
# rpm's own character classes are ASCII (risdigit, risalpha): another script's letters or digits separate.
_RPM_DIGITS = frozenset("0123456789")
_RPM_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_RPM_ALNUM = _RPM_DIGITS | _RPM_LETTERS


def rpm_version(slurm: SlurmRelease) -> str:
    """The spec's Version: the same upstream version as the .deb's (`24.11.5`, `24.11.5+tag2`)."""
    return upstream_version(slurm)


def rpm_release(*, release: int, dist: str) -> str:
    """The spec's Release once `%{?dist}` is expanded (`1.sf.el9`)."""
    return f"{release}.{RPM_RELEASE_MARKER}{dist}"


def _rpm_segment(text: str, start: int, characters: frozenset[str]) -> int:
    end = start
    while end < len(text) and text[end] in characters:
        end += 1
    return end


def _skip_rpm_separators(text: str, index: int) -> int:
    while index < len(text) and text[index] not in _RPM_ALNUM and text[index] not in "~^":
        index += 1
    return index


def _compare_rpm_marks(left_mark: str, right_mark: str) -> int | None:
    """`~` (before everything, the end included) and `^` (after the end, before anything else) as the next
    character of each string ("" at its end); None when neither is one."""
    if "~" in (left_mark, right_mark):
        if left_mark != right_mark:
            return 1 if right_mark == "~" else -1
        return 0
    if "^" in (left_mark, right_mark):
        if not left_mark or not right_mark:
            return -1 if not left_mark else 1
        if left_mark != right_mark:
            return 1 if right_mark == "^" else -1
        return 0
    return None


def _compare_rpm_numbers(left: str, right: str) -> int:
    left, right = left.lstrip("0"), right.lstrip("0")
    if len(left) != len(right):
        return -1 if len(left) < len(right) else 1
    return (left > right) - (left < right)


def rpmvercmp(left: str, right: str) -> int:
    """-1, 0 or 1 as rpm's `rpmvercmp()` compares one field (a Version or a Release): runs of digits compare as
    numbers, runs of ASCII letters as text, a number is newer than letters at the same place, everything else
    separates, `~` sorts before and `^` after the end; left over segments win."""
    if left == right:
        return 0
    i = j = 0
    while i < len(left) or j < len(right):
        i, j = _skip_rpm_separators(left, i), _skip_rpm_separators(right, j)
        marks = _compare_rpm_marks(left[i : i + 1], right[j : j + 1])
        if marks is not None:
            if marks:
                return marks
            i, j = i + 1, j + 1
            continue
        if i >= len(left) or j >= len(right):
            break
        numeric = left[i] in _RPM_DIGITS
        characters = _RPM_DIGITS if numeric else _RPM_LETTERS
        left_end, right_end = _rpm_segment(left, i, characters), _rpm_segment(right, j, characters)
        if right_end == j:  # the other holds a segment of the other kind here: a number beats letters
            return 1 if numeric else -1
        left_part, right_part = left[i:left_end], right[j:right_end]
        found = (
            _compare_rpm_numbers(left_part, right_part)
            if numeric
            else (left_part > right_part) - (left_part < right_part)
        )
        if found:
            return found
        i, j = left_end, right_end
    if i >= len(left) and j >= len(right):
        return 0
    return -1 if i >= len(left) else 1


def _split_rpm_version(version: str) -> tuple[str, str, str]:
    epoch, _, rest = version.partition(":") if ":" in version else ("0", "", version)
    upstream, _, release = rest.rpartition("-") if "-" in rest else (rest, "", "")
    return epoch or "0", upstream, release


def compare_rpm_versions(left: str, right: str) -> int:
    """-1, 0 or 1 for two `[epoch:]version[-release]` strings as rpm orders them (its `rpm.vercmp`, what dnf
    upgrades by): the epoch (0 when absent), then the Version, then the Release, each with `rpmvercmp`."""
    left_parts, right_parts = _split_rpm_version(left), _split_rpm_version(right)
    for left_part, right_part in zip(left_parts, right_parts, strict=True):
        found = rpmvercmp(left_part, right_part)
        if found:
            return found
    return 0
