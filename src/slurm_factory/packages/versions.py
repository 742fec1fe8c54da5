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
    text = str(value).strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_RELEASE:
        raise ConfigurationError(
            f"--package-release {text or repr(value)}: expected a whole number from 1 to {MAX_RELEASE}",
            hint="bump it by one for each rebuild of the same Slurm release",
        )
    return int(text)
