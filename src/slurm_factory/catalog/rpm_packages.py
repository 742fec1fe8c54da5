"""The .rpm package split (`data/rpm_packages.yaml`): names, requirements, units, users, files, descriptions, the
packaging image's tools and the rpmlint findings accepted for them."""

from __future__ import annotations

from functools import cache

import yaml
from pydantic import BaseModel, ConfigDict

from slurm_factory.catalog._data import read_data_text
from slurm_factory.catalog.toolchains import Toolchain
from slurm_factory.exceptions import ConfigurationError

RPM_PACKAGES_FILE = "rpm_packages.yaml"
# The spec's Name: every other package is `<MAIN_PACKAGE>-<suffix>` (`%package <suffix>`).
MAIN_PACKAGE = "slurm-smd"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SystemUser(_Frozen):
    """A system user (and its group of the same name) a package's %pre creates when it does not exist."""

    name: str
    home: str
    comment: str


class RpmPackage(_Frozen):
    name: str
    summary: str
    description: tuple[str, ...]
    files: tuple[str, ...]
    requires: tuple[str, ...] = ()
    requires_pre: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    users: tuple[SystemUser, ...] = ()
    noarch: bool = False

    @property
    def suffix(self) -> str | None:
        """What `%package`, `%files` and the scriptlets name a subpackage by (`client`); None for the main one."""
        if self.name == MAIN_PACKAGE:
            return None
        return self.name.removeprefix(f"{MAIN_PACKAGE}-")


class RpmlintFilter(_Frozen):
    """An rpmlint finding (a regular expression over its output line) accepted for these packages, and why."""

    pattern: str
    reason: str


class RpmPackages(_Frozen):
    packager: str
    url: str
    license: str
    dist_tags: dict[str, str]
    packaging_tools: tuple[str, ...]
    systemd_macros: str
    systemd_macros_by_toolchain: dict[str, str] = {}
    build_requires: tuple[str, ...] = ()
    packages: tuple[RpmPackage, ...]
    rpmlint_filters: tuple[RpmlintFilter, ...] = ()

    def systemd_macros_package(self, toolchain: Toolchain) -> str:
        """The package that defines %systemd_post and %{_unitdir} on this toolchain."""
        return self.systemd_macros_by_toolchain.get(toolchain.name, self.systemd_macros)

    def dist_tag(self, toolchain: Toolchain) -> str:
        """The Release's fixed dist tag for the toolchain (`.el9`)."""
        if toolchain.os_id not in self.dist_tags:
            raise ConfigurationError(
                f"--package rpm: {toolchain.name} ({toolchain.os}) has no dist tag in {RPM_PACKAGES_FILE}",
                hint=f"add its os_id {toolchain.os_id!r} to dist_tags there",
            )
        return self.dist_tags[toolchain.os_id].format(codename=toolchain.codename)


@cache
def load_rpm_packages() -> RpmPackages:
    return RpmPackages.model_validate(yaml.safe_load(read_data_text(RPM_PACKAGES_FILE)))
