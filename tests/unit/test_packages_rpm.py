"""`--package rpm`: the request's acceptance and refusals, the version rules (an rpmvercmp checked against rpm's own
where rpm is installed), the rendered slurm-smd.spec (its package split, configuration files, scriptlets, users,
library directory, debug packages, reproducibility), the golden plans of the dnf toolchains, and — where Debian's
`rpm` and `rpmlint` are installed (`apt-get install rpm rpmlint`) — the spec as rpmspec parses it with a Rocky
build image's macros and as rpmlint judges it.

Regenerate the golden plans after an intended change with
`SLURM_FACTORY_UPDATE_GOLDEN=1 pytest tests/unit/test_packages_rpm.py` and review the diff like code.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from slurm_factory.catalog import load_toolchains
from slurm_factory.catalog.deb_packages import load_deb_packages
from slurm_factory.catalog.releases import SlurmRelease
from slurm_factory.catalog.rpm_packages import MAIN_PACKAGE, load_rpm_packages
from slurm_factory.config import Settings
from slurm_factory.exceptions import EXIT_USAGE, ConfigurationError
from slurm_factory.packages import rpm
from slurm_factory.packages.versions import compare_rpm_versions, rpm_release, rpm_version, rpmvercmp
from slurm_factory.patches import PATCH_ARGUMENTS
from slurm_factory.plan import native
from slurm_factory.request import BuildRequest, PackageKind, make_request, require_buildable_packages

NATIVE_RPM = {"engine": "native", "toolchain": "rockylinux9", "slurm_version": "24.11.5", "package": "rpm"}
DNF_TOOLCHAINS = [name for name, toolchain in load_toolchains().items() if toolchain.family == "dnf"]
DATA = Path(__file__).parent / "data" / "rpm"
ROCKY_MACROS = DATA / "rocky.macros"
GOLDEN = Path(__file__).parent.parent / "golden" / "rpm"
UPDATE = os.environ.get("SLURM_FACTORY_UPDATE_GOLDEN") == "1"
SECTION = re.compile(r"^%(package|description|files|prep|build|install|pre|post|preun|postun|changelog)\b(.*)$")
# The .deb package each .rpm package parallels (the .deb set splits the PMI libraries by soname).
DEB_COUNTERPARTS = {
    "slurm-smd": ["slurm-smd"],
    "slurm-smd-client": ["slurm-smd-client"],
    "slurm-smd-slurmctld": ["slurm-smd-slurmctld"],
    "slurm-smd-slurmd": ["slurm-smd-slurmd"],
    "slurm-smd-slurmdbd": ["slurm-smd-slurmdbd"],
    "slurm-smd-slurmrestd": ["slurm-smd-slurmrestd"],
    "slurm-smd-sackd": ["slurm-smd-sackd"],
    "slurm-smd-libpmi": ["slurm-smd-libpmi0", "slurm-smd-libpmi2-0"],
    "slurm-smd-nss_slurm": ["slurm-smd-libnss-slurm"],
    "slurm-smd-pam_slurm": ["slurm-smd-libpam-slurm-adopt"],
    "slurm-smd-perlapi": ["slurm-smd-libslurm-perl"],
    "slurm-smd-contribs": ["slurm-smd-contribs"],
    "slurm-smd-devel": ["slurm-smd-dev"],
    "slurm-smd-doc": ["slurm-smd-doc"],
}
DAEMONS = ("slurmctld", "slurmd", "slurmdbd", "slurmrestd", "sackd")
needs_rpmspec = pytest.mark.skipif(
    shutil.which("rpmspec") is None, reason="rpmspec is not installed (apt-get install rpm)"
)
needs_rpmlint = pytest.mark.skipif(
    shutil.which("rpmlint") is None, reason="rpmlint is not installed (apt-get install rpmlint)"
)


def _request(**options: object) -> BuildRequest:
    return make_request(**{**NATIVE_RPM, **options})  # type: ignore[arg-type]


def _spec(**options: object) -> str:
    return rpm.render_spec(_request(**options)).content


def test_the_packager_a_site_gives_is_the_packager_tag_and_the_changelogs_author() -> None:
    assert "Packager:" not in _spec()
    spec = _spec(package_maintainer="HPC Team <hpc@example.org>")
    assert "Packager:       HPC Team <hpc@example.org>\n" in spec
    (entry,) = (line for line in spec.splitlines() if line.startswith("* "))
    assert entry.endswith("HPC Team <hpc@example.org> - 24.11.5-1.sf.el9")


def _sections(spec: str) -> dict[tuple[str, str], list[str]]:
    """The spec's sections by (kind, package name): `%files slurmd` is ("files", "slurm-smd-slurmd")."""
    sections: dict[tuple[str, str], list[str]] = {}
    current = ("preamble", MAIN_PACKAGE)
    for line in spec.splitlines():
        match = SECTION.match(line)
        if match:
            words = [word for word in match.group(2).split() if not word.startswith("-")]
            current = (match.group(1), f"{MAIN_PACKAGE}-{words[0]}" if words else MAIN_PACKAGE)
            sections[current] = []
        else:
            sections.setdefault(current, []).append(line)
    return sections


# The request


def test_an_rpm_request_on_a_dnf_toolchain_is_accepted_and_numbers_its_release() -> None:
    request = _request(package_release="3")
    assert request.native_package_kind is PackageKind.RPM
    assert request.builds_packages and not request.builds_tarball
    assert request.package_release == 3


@pytest.mark.parametrize(
    ("toolchain", "kind"),
    [("rockylinux9", PackageKind.RPM), ("rockylinux8", PackageKind.RPM), ("trixie", PackageKind.DEB)],
)
def test_all_is_the_tarball_and_the_toolchains_own_format(toolchain: str, kind: PackageKind) -> None:
    request = _request(package="all", toolchain=toolchain)
    assert request.builds_tarball and request.native_package_kind is kind


def test_the_tarball_alone_has_no_native_format() -> None:
    assert _request(package="tarball").native_package_kind is None


@pytest.mark.parametrize(
    ("options", "words", "hint"),
    [
        ({"toolchain": "trixie"}, "--package rpm builds .rpm packages, for dnf toolchains; trixie", "rockylinux10"),
        (
            {"toolchain": "rockylinux9", "package": "deb"},
            ".rpm packages are not built yet",
            "--package rpm --dry-run",
        ),
        ({"engine": "spack"}, "needs the native engine", "--engine native"),
        ({"package_release": "0"}, "from 1 to 9999", "bump it by one"),
        (
            {"publish": "slurm", "signing_key": "0x" + "A" * 16},
            "--publish, --signing-key with --package rpm",
            "--plan-dir",
        ),
        ({"signing_key": "0x" + "A" * 16}, ".rpm packages are only planned yet", "drop --signing-key"),
        ({"package": "all", "verify": True}, "--verify with --package all on a dnf toolchain", "--package tarball"),
    ],
)
def test_an_rpm_request_that_cannot_be_planned_is_refused_naming_why(
    options: dict[str, object], words: str, hint: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(words)) as refused:
        _request(**options)
    assert refused.value.exit_code == EXIT_USAGE
    assert refused.value.hint is not None and hint in refused.value.hint


@pytest.mark.parametrize(("package", "toolchain"), [("rpm", "rockylinux9"), ("all", "rockylinux10")])
def test_a_build_of_rpm_packages_that_would_run_is_refused_but_its_plan_renders(
    package: str, toolchain: str, tmp_path: Path
) -> None:
    request = _request(package=package, toolchain=toolchain)
    with pytest.raises(ConfigurationError, match=r"\.rpm packages, which are not built yet") as refused:
        require_buildable_packages(request)
    assert refused.value.exit_code == EXIT_USAGE
    assert refused.value.hint is not None and "--dry-run" in refused.value.hint and "--plan-dir" in refused.value.hint
    assert rpm.make_package_plan(request, Settings(home=tmp_path)).kind == "rpm"


@pytest.mark.parametrize(("package", "toolchain"), [("deb", "trixie"), ("all", "trixie"), ("tarball", "rockylinux9")])
def test_builds_of_formats_that_are_built_are_not_refused(package: str, toolchain: str) -> None:
    require_buildable_packages(_request(package=package, toolchain=toolchain))


def test_build_refuses_an_rpm_build_before_anything_runs_and_dry_run_renders_the_rpm_plan(tmp_path: Path) -> None:
    from slurm_factory.builder import build

    options = {"engine": "native", "toolchain": "rockylinux9", "slurm_version": "24.11.5", "package": "rpm"}
    settings = Settings(home=tmp_path / "home")
    with pytest.raises(ConfigurationError, match=r"\.rpm packages, which are not built yet"):
        build(settings=settings, plan_dir=tmp_path / "context", **options)  # type: ignore[arg-type]
    assert not (tmp_path / "home").exists() and not (tmp_path / "context").exists()
    planned = build(settings=settings, dry_run=True, plan_dir=tmp_path / "context", **options)  # type: ignore[arg-type]
    assert planned.package_plan is not None and planned.package_plan.kind == "rpm"
    assert planned.package_plan.version == "24.11.5-1.sf.el9"
    spec = (tmp_path / "context" / "packages" / "slurm-smd.spec").read_text(encoding="utf-8")
    assert spec == planned.package_plan.context_files()["slurm-smd.spec"].content
    assert planned.preflight is not None and "plan only" in planned.preflight.summary["packages"]


def test_the_rpm_plan_is_not_made_for_a_deb_request(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="an rpm plan of a request for deb"):
        rpm.make_package_plan(_request(package="deb", toolchain="trixie"), Settings(home=tmp_path))


# Versions


# Each pair as rpm orders it (older first), and what it shows.
ORDERED = [
    ("24.11.5-1.sf.el9", "24.11.5-2.sf.el9"),  # --package-release bumps a rebuild
    ("24.11.5-9.sf.el9", "24.11.5-10.sf.el9"),  # numerically, not as text
    ("24.11.5-1.el9", "24.11.5-1.sf.el9"),  # above SchedMD's rpmbuild -ta (and EPEL's) of the same release
    ("24.11.5-1.sf.el9", "24.11.5-2.el9"),  # below their next release number
    ("24.11.5-1.sf.el9_4", "24.11.5-1.sf.el9_5"),  # what a dist tag that names the minor would do
    ("24.11.5-1.sf.el8", "24.11.5-1.sf.el9"),  # an OS upgrade takes the newer major's build
    ("24.11.5-99.sf.el9", "24.11.5+tag2-1.sf.el9"),  # a re-tag above any rebuild of the first tag
    ("24.11.5+tag2-1.sf.el9", "24.11.5+tag10-1.sf.el9"),
    ("24.11.5+tag2-1.sf.el9", "24.11.6-1.sf.el9"),  # below the next patch release
    ("24.11.9-1.sf.el9", "24.11.10-1.sf.el9"),
    ("24.11.6-1.sf.el9", "25.05.0-1.sf.el9"),
    ("22.05.9-3.el9", "24.11.5-1.sf.el9"),  # EPEL 9's slurm
    ("1.0~rc1-1", "1.0-1"),  # rpm's tilde sorts before the end
    ("1.0-1", "1.0^git1-1"),  # and its caret after it, before anything else
    ("1.0^git1-1", "1.0.1-1"),
    ("1.0a-1", "1.0.1-1"),  # a number beats letters at the same place
    ("1.0-1", "1.0-1.1"),  # a segment more wins
    ("9.9-1", "1:0.1-1"),  # an epoch wins
    ("1.0-1", "1.0.0-1"),
]


@pytest.mark.parametrize(("older", "newer"), ORDERED)
def test_versions_sort_as_rpm_sorts_them(older: str, newer: str) -> None:
    assert compare_rpm_versions(older, newer) == -1
    assert compare_rpm_versions(newer, older) == 1
    assert compare_rpm_versions(newer, newer) == 0


@pytest.mark.parametrize(
    ("left", "right", "order"),
    [("1.01", "1.1", 0), ("1_0", "1.0", 0), ("1.0", "1..0", 0), ("\u03b11", "1", 0), ("010", "9", 1), ("a", "b", -1)],
)
def test_rpmvercmp_ignores_separators_and_leading_zeros(left: str, right: str, order: int) -> None:
    assert rpmvercmp(left, right) == order


def _rpm_vercmp(pairs: list[tuple[str, str]]) -> list[int]:
    """rpm's own answers (its Lua `rpm.vercmp`, what rpm and dnf order packages by)."""
    chunk = " ".join(f"print(rpm.vercmp('{left}', '{right}') .. ' ')" for left, right in pairs)
    found = subprocess.run(["rpm", "--eval", f"%{{lua: {chunk}}}"], capture_output=True, text=True, check=True)
    return [int(line) for line in found.stdout.split()]


@pytest.mark.skipif(shutil.which("rpm") is None, reason="rpm is not installed (apt-get install rpm)")
def test_the_ordering_is_rpms_own() -> None:
    pairs = [pair for older, newer in ORDERED for pair in ((older, newer), (newer, older), (older, older))]
    pairs += [("1.0-1", "1.0"), ("1.0", "1.0-1"), ("24.11.5", "24.11.5+tag2"), ("1.0.a", "1.0.1"), ("2", "2a")]
    assert [compare_rpm_versions(left, right) for left, right in pairs] == _rpm_vercmp(pairs)


def test_the_version_is_the_release_and_the_release_names_the_rebuild_and_the_dist() -> None:
    request = _request(package_release="3")
    assert rpm.package_version(request) == "24.11.5-3.sf.el9"
    assert rpm.package_version(_request(toolchain="rockylinux10")) == "24.11.5-1.sf.el10"
    retag = SlurmRelease(key=(24, 11, 5, 2), tag="24-11-5-2", sha256="0" * 64, date=dt.date(2025, 6, 1))
    assert rpm_version(retag) == "24.11.5+tag2"
    assert rpm_release(release=2, dist=".el8") == "2.sf.el8"
    spec = _spec(package_release="3")
    assert "\nVersion:        24.11.5\n" in spec and "\nRelease:        3.sf%{?dist}\n" in spec
    assert "\n%global dist .el9\n" in spec


# The spec


def test_the_package_split_parallels_the_deb_set_and_schedmds_spec() -> None:
    names = [package.name for package in load_rpm_packages().packages]
    assert names[0] == MAIN_PACKAGE
    assert set(names) == set(DEB_COUNTERPARTS)
    deb_names = {package.name for package in load_deb_packages().packages}
    assert sorted(deb for debs in DEB_COUNTERPARTS.values() for deb in debs) == sorted(deb_names)
    sections = _sections(_spec())
    packages = {name for kind, name in sections if kind == "package"}
    assert packages | {MAIN_PACKAGE} == set(names)
    assert {name for kind, name in sections if kind == "files"} == set(names)
    assert {name for kind, name in sections if kind == "description"} == set(names)
    # SchedMD's: accounting_storage_mysql.so is slurmdbd's, so only that package needs MariaDB's client library.
    assert "%{_libdir}/slurm/accounting_storage_mysql.so" in sections[("files", "slurm-smd-slurmdbd")]
    assert "%exclude %{_libdir}/slurm/accounting_storage_mysql.so" in sections[("files", MAIN_PACKAGE)]


def test_every_file_in_etc_is_a_configuration_file_an_upgrade_keeps() -> None:
    sections = _sections(_spec())
    in_etc = [
        (name, line)
        for (kind, name), lines in sections.items()
        if kind == "files"
        for line in lines
        if "%{_sysconfdir}" in line or " /etc/" in f" {line}"
    ]
    assert len(in_etc) == 7  # /etc/slurm, the logrotate file, the five options files
    for name, line in in_etc:
        if line.startswith("%dir "):
            continue
        assert line.startswith("%config(noreplace) "), (name, line)
    for daemon in DAEMONS:
        assert f"%config(noreplace) %{{_sysconfdir}}/sysconfig/{daemon}" in sections[("files", f"slurm-smd-{daemon}")]


def test_requirements_name_no_library_rpm_derives_them() -> None:
    for package in load_rpm_packages().packages:
        for requirement in (*package.requires, *package.requires_pre):
            assert not re.search(r"\.so|-libs\b|^lib", requirement), (package.name, requirement)
            assert requirement.startswith(("slurm-smd", "munge", "shadow-utils", "perl(:MODULE_COMPAT")), requirement


def test_no_scriptlet_starts_or_restarts_a_daemon_and_every_unit_has_its_systemd_scriptlets() -> None:
    spec = _spec()
    assert "systemd_postun_with_restart" not in spec
    assert not re.search(r"systemctl\s+(start|restart|try-restart|reload-or-restart)", spec)
    sections = _sections(spec)
    for daemon in DAEMONS:
        package = f"slurm-smd-{daemon}"
        for scriptlet in ("post", "preun", "postun"):
            assert f"%systemd_{scriptlet} {daemon}.service" in sections[(scriptlet, package)], (package, scriptlet)
        assert f"%{{_unitdir}}/{daemon}.service" in sections[("files", package)]
        assert "%{?systemd_requires}" in sections[("package", package)]


def _accounts_host(tmp_path: Path, accounts: list[str]) -> dict[str, str]:
    """A PATH whose getent, groupadd and useradd are the stubs of data/rpm/stubs, over a fake account list."""
    stubs = tmp_path / "bin"
    shutil.copytree(DATA / "stubs", stubs)
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    (tmp_path / "accounts").write_text("".join(f"{entry}\n" for entry in accounts), encoding="utf-8")
    (tmp_path / "calls").write_text("", encoding="utf-8")
    return {
        "PATH": f"{stubs}:{os.environ['PATH']}",
        "SF_ACCOUNTS": str(tmp_path / "accounts"),
        "SF_CALLS": str(tmp_path / "calls"),
    }


def _run_pre(body: str, environment: dict[str, str], tmp_path: Path) -> list[str]:
    before = (tmp_path / "calls").read_text(encoding="utf-8").splitlines()
    subprocess.run(["sh", "-c", body, "pre", "1"], env=environment, check=True)
    return (tmp_path / "calls").read_text(encoding="utf-8").splitlines()[len(before) :]


@pytest.mark.parametrize(("package", "user"), [(MAIN_PACKAGE, "slurm"), ("slurm-smd-slurmrestd", "slurmrestd")])
def test_pre_creates_its_system_user_once_and_keeps_a_sites_own(package: str, user: str, tmp_path: Path) -> None:
    body = "\n".join(_sections(_spec())[("pre", package)])
    environment = _accounts_host(tmp_path, [])
    first = _run_pre(body, environment, tmp_path)
    assert [call.split()[0] for call in first] == ["groupadd", "useradd"]
    assert first[0] == f"groupadd -r {user}"
    assert first[1].startswith("useradd -r -M -g ") and first[1].endswith(f" {user}")
    assert "-s /sbin/nologin" in first[1]
    assert _run_pre(body, environment, tmp_path) == [], "an upgrade's %pre changes nothing"
    site = _accounts_host(tmp_path / "site", [f"group {user}", f"passwd {user}"])
    assert _run_pre(body, site, tmp_path / "site") == [], "a site's own user (from LDAP) is kept as it is"


def test_the_slurm_owned_directories_are_installed_after_the_user_exists() -> None:
    sections = _sections(_spec())
    assert "%dir %attr(0750,slurm,slurm) %{_localstatedir}/log/slurm" in sections[("files", MAIN_PACKAGE)]
    assert (
        "%dir %attr(0750,slurm,slurm) %{_localstatedir}/spool/slurmctld" in sections[("files", "slurm-smd-slurmctld")]
    )
    assert "Requires(pre):  slurm-smd%{?_isa} = %{version}-%{release}" in sections[("package", "slurm-smd-slurmctld")]
    assert "Requires(pre):  shadow-utils" in sections[("preamble", MAIN_PACKAGE)]


def test_the_packages_are_configured_for_the_fhs_layout_with_the_tarballs_other_options() -> None:
    request = _request()
    packaged = native.configure_options(request, install_dirs=rpm.package_install_dirs())
    tree = native.configure_options(request)
    assert packaged[:3] == ["--prefix=/usr", "--libdir=%{_libdir}", "--with-systemdsystemunitdir=%{_unitdir}"]
    assert "--with-pam_dir=%{_libdir}/security" in packaged and "--sysconfdir=/etc/slurm" in packaged
    unchanged = [option for option in tree if not option.startswith(("--prefix", "--with-pam_dir"))]
    assert [option for option in packaged if option in unchanged] == unchanged
    build = "\n".join(_sections(_spec())[("build", MAIN_PACKAGE)])
    assert all(f"    {option}" in build for option in packaged)
    flags = native.build_flags(request)
    assert f'export CFLAGS="{" ".join(flags.cflags)} -fmacro-prefix-map=$PWD=."' in build
    assert f'export LDFLAGS="{" ".join(flags.ldflags)}"' in build
    for contrib in native.contribs(request):
        assert f"-C contribs/{contrib}" in build


def test_the_spec_names_library_directories_by_macro_only() -> None:
    spec = _spec()
    assert "lib64" not in spec and "linux-gnu" not in spec and "/usr/lib/" not in spec
    assert "%{_libdir}/slurm/*.so" in spec and "%{perl_vendorarch}/Slurm*" in spec


def test_the_patches_are_applied_in_order_as_the_tarball_build_applies_them(tmp_path: Path) -> None:
    patch = tmp_path / "site-fix.patch"
    patch.write_text("--- a/README\n+++ b/README\n@@ -1 +1 @@\n-a\n+b\n", encoding="utf-8")
    request = _request(patches=[str(patch)])
    spec = rpm.render_spec(request).content
    names = [Path(item.plan_name).name for item in request.patches]
    assert names[-1].endswith("-site-fix.patch") and len(names) == 3
    for number, name in enumerate(names, start=1):
        assert re.search(rf"^Patch{number}: +{re.escape(name)}$", spec, re.MULTILINE), name
        assert f"patch {' '.join(PATCH_ARGUMENTS)} -i %{{PATCH{number}}}" in spec
    changelog = " ".join(line.strip() for line in _sections(spec)[("changelog", MAIN_PACKAGE)])
    assert re.search(rf"- Patch {re.escape(names[-1])} \(site\), sha256 [0-9a-f]{{16}}\.", changelog), changelog
    script = rpm.render_build_script(request).content
    assert all(f'cp "$PLAN_DIR/patches/{name}" "$TOPDIR/SOURCES/"' in script for name in names)


def test_the_build_is_reproducible_from_the_release_date() -> None:
    request = _request()
    spec = _spec()
    for macro in ("clamp_mtime_to_source_date_epoch 1", "use_source_date_epoch_as_buildtime 1", "_buildhost "):
        assert f"\n%global {macro}" in spec, macro
    assert f"\nexport SOURCE_DATE_EPOCH={request.slurm.source_date_epoch}\n" in rpm.render_build_script(request).content
    changelog = _sections(spec)[("changelog", MAIN_PACKAGE)]
    assert changelog[0] == "* Wed May 07 2025 slurm-factory <slurm-factory@localhost> - 24.11.5-1.sf.el9"
    assert request.slurm.date == dt.date(2025, 5, 7)


def test_descriptions_and_changelog_lines_fit_rpmlints_width() -> None:
    sections = _sections(_spec())
    for (kind, name), lines in sections.items():
        if kind in ("description", "changelog"):
            assert all(len(line) <= rpm.LINE_WIDTH for line in lines), (kind, name)
    assert all(len(package.summary) <= rpm.LINE_WIDTH for package in load_rpm_packages().packages)


def test_the_units_and_options_files_are_for_usr_and_etc_sysconfig() -> None:
    sources = {source.name: source for source in rpm.spec_sources(_request())}
    for daemon in DAEMONS:
        unit = sources[f"{daemon}.service"]
        assert unit.target == f"%{{_unitdir}}/{daemon}.service"
        assert f"ExecStart=/usr/sbin/{daemon} " in unit.content and "@" not in unit.content.replace("@slurm", "")
        assert f"EnvironmentFile=-/etc/sysconfig/{daemon}" in unit.content
        options = sources[f"{daemon}.sysconfig"]
        assert options.target == f"%{{_sysconfdir}}/sysconfig/{daemon}"
        assert f'#{daemon.upper()}_OPTIONS=""' in options.content
    assert sources["slurm.conf.example"].target == "%{_docdir}/slurm-smd/examples/slurm.conf"
    assert "@SLURM_CONF_DIR@" not in sources["slurm.conf.example"].content


def test_debug_symbols_are_packaged_once_with_or_without_the_distributions_hook() -> None:
    spec = _spec()
    assert "\n%global _debuginfo_subpackages 1\n" in spec and "\n%global _debugsource_packages 1\n" in spec
    assert "\n%{!?__debug_package:%debug_package}\n" in spec


def test_the_plan_has_its_own_identity_image_and_files(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    first, second = (rpm.make_package_plan(_request(package_release=n), settings) for n in ("1", "2"))
    assert first.build_id != second.build_id and first.version == "24.11.5-1.sf.el9"
    assert rpm.make_package_plan(_request(), settings).build_id == first.build_id
    assert first.artifact_path.parent == tmp_path / "builds" / "packages"
    assert first.kind == "rpm" and first.artifact_root == "slurm-smd 24.11.5-1.sf.el9"
    assert "toolchain-rockylinux9-rpm-native" in first.image.repository
    dockerfile = first.image.dockerfile
    assert f"FROM {first.toolchain_image.reference}\n" in dockerfile
    assert all(
        f"        {tool} \\" in dockerfile for tool in ("rpm-build", "rpmlint", "createrepo_c", "systemd-rpm-macros")
    )
    names = set(first.context_files())
    assert {"build-rpm.sh", "slurm-smd.spec", "slurm-smd.rpmlintrc", "sources/slurmd.service"} <= names
    rocky8 = rpm.make_package_plan(_request(toolchain="rockylinux8"), settings)
    assert "        systemd \\" in rocky8.image.dockerfile and "systemd-rpm-macros" not in rocky8.image.dockerfile


def test_every_rpmlint_filter_names_its_reason_in_a_comment_above_it() -> None:
    lines = rpm.render_rpmlintrc().content.splitlines()
    filters = [index for index, line in enumerate(lines) if line.startswith("addFilter(")]
    assert len(filters) == len(load_rpm_packages().rpmlint_filters)
    for index in filters:
        assert lines[index - 1].startswith("# "), lines[index]


@pytest.mark.parametrize("toolchain", DNF_TOOLCHAINS)
def test_the_rpm_plan_matches_its_golden_files(toolchain: str, tmp_path: Path) -> None:
    request = _request(toolchain=toolchain)
    plan = rpm.make_package_plan(request, Settings(project_name="golden", home=tmp_path))
    directory = GOLDEN / toolchain
    rendered = {name: plan_file.content for name, plan_file in plan.context_files().items()}
    if UPDATE:
        shutil.rmtree(directory, ignore_errors=True)
        for name, content in rendered.items():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            (directory / name).write_text(content, encoding="utf-8")
    expected = {
        str(path.relative_to(directory)): path.read_text(encoding="utf-8")
        for path in directory.rglob("*")
        if path.is_file()
    }
    assert sorted(rendered) == sorted(expected)
    for name, content in rendered.items():
        assert content == expected[name], f"{directory.name}/{name} differs from its golden file"


# What rpm's own tools say


def _rpmspec(spec: Path, *arguments: str, rocky: bool) -> str:
    load = ["--load", str(ROCKY_MACROS)] if rocky else []
    found = subprocess.run(["rpmspec", *load, *arguments, str(spec)], capture_output=True, text=True, check=False)
    assert found.returncode == 0, found.stderr
    assert "warning" not in found.stderr.lower(), found.stderr
    return found.stdout


def _written_spec(tmp_path: Path, **options: object) -> Path:
    path = tmp_path / rpm.SPEC_FILE
    path.write_text(_spec(**options), encoding="utf-8")
    return path


@needs_rpmspec
@pytest.mark.parametrize("rocky", [True, False], ids=["rocky-macros", "plain-rpm"])
def test_rpmspec_parses_the_spec_into_the_split_with_one_debuginfo_set(tmp_path: Path, *, rocky: bool) -> None:
    spec = _written_spec(tmp_path)
    built = _rpmspec(spec, "-q", "--builtrpms", "--queryformat", "%{name} %{version}-%{release} %{arch}\n", rocky=rocky)
    rows = [line.split() for line in built.splitlines()]
    expected = [package.name for package in load_rpm_packages().packages]
    assert [name for name, _, _ in rows] == [*expected, "slurm-smd-debuginfo", "slurm-smd-debugsource"]
    assert {version for _, version, _ in rows} == {"24.11.5-1.sf.el9"}, "the spec's dist tag, not the image's .el9_4"
    assert {name for name, _, arch in rows if arch == "noarch"} == {"slurm-smd-doc"}


@needs_rpmspec
def test_rpmspec_expands_the_scriptlets_without_a_restart_and_the_paths_for_rocky(tmp_path: Path) -> None:
    expanded = _rpmspec(_written_spec(tmp_path), "-P", rocky=True)
    assert "install-system-units slurmctld.service" in expanded and "remove-system-units slurmd.service" in expanded
    commands = [line for line in expanded.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in commands if "restart" in line or "systemctl" in line]
    assert "--libdir=/usr/lib64 \\" in expanded and "--with-pam_dir=/usr/lib64/security \\" in expanded
    assert "--with-systemdsystemunitdir=/usr/lib/systemd/system \\" in expanded
    assert "/usr/lib64/perl5/vendor_perl/Slurm*" in expanded
    listed = _rpmspec(_written_spec(tmp_path), "-q", "--queryformat", "%{name}:[ %{REQUIRENEVRS},]\n", rocky=True)
    requires = {
        name: {entry.strip() for entry in entries.split(",") if entry.strip()}
        for name, _, entries in (line.partition(":") for line in listed.splitlines())
    }
    assert {"systemd", "slurm-smd(x86-64) = 24.11.5-1.sf.el9"} <= requires["slurm-smd-slurmctld"]
    assert requires["slurm-smd"] == {"/bin/sh", "munge", "shadow-utils"}
    assert requires["slurm-smd-pam_slurm"] == set(), "their libraries' requirements are rpm's, from the binaries"
    assert not [entry for entries in requires.values() for entry in entries if ".so" in entry]


@needs_rpmlint
@needs_rpmspec
def test_rpmlint_finds_nothing_in_the_spec_but_what_its_filters_explain(tmp_path: Path) -> None:
    spec = _written_spec(tmp_path)
    rpmlintrc = tmp_path / rpm.RPMLINTRC
    rpmlintrc.write_text(rpm.render_rpmlintrc().content, encoding="utf-8")
    # rpmlint runs rpmspec in en_US.UTF-8, which a test host need not have: Perl's locale warning would be a
    # specfile-error (the packaging image installs glibc-langpack-en). Filters about built packages go unused here.
    environment = {**os.environ, "PERL_BADLANG": "0"}
    command = ["rpmlint", "--ignore-unused-rpmlintrc", "-r", str(rpmlintrc), str(spec)]
    found = subprocess.run(command, capture_output=True, text=True, check=False, env=environment, cwd=tmp_path)
    assert found.returncode == 0, found.stdout + found.stderr
    assert re.search(r"\b0 errors, 0 warnings\b", found.stdout), found.stdout
