"""The native package formats behind one entry point: the request's toolchain family decides which plan renders
(`deb` on apt toolchains, `rpm` on dnf ones), as `engines/` does for the tarball's engines."""

from __future__ import annotations

from slurm_factory.choices import PackageKind
from slurm_factory.config import Settings
from slurm_factory.packages import deb, rpm
from slurm_factory.plan.model import PackagePlan
from slurm_factory.request import BuildRequest


def make_package_plan(request: BuildRequest, settings: Settings) -> PackagePlan:
    """The plan of the request's native packages (`request.builds_packages` must hold)."""
    if request.native_package_kind is PackageKind.RPM:
        return rpm.make_package_plan(request, settings)
    return deb.make_package_plan(request, settings)


def package_summary(request: BuildRequest) -> str:
    """One line for `--dry-run`'s preflight: the format, the version and the checks the packages go through."""
    if request.native_package_kind is PackageKind.RPM:
        return f".rpm packages slurm-smd {rpm.package_version(request)} (FHS: /usr, /usr/lib64, /etc/slurm), plan only"
    return f".deb packages slurm-smd {deb.package_version(request)} (FHS: /usr, /etc/slurm), lintian-checked"
