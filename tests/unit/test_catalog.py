"""The catalog: Slurm releases (parsing, resolution, checksums) and toolchains, against docs/toolchains.md."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from slurm_factory.catalog import (
    SlurmRelease,
    known_series,
    load_families,
    load_releases,
    load_toolchains,
    resolve_release,
    toolchain_names,
)
from slurm_factory.catalog._data import read_data_text
from slurm_factory.catalog.compilers import check_gcc_version, load_gcc_catalog
from slurm_factory.catalog.releases import ReleaseLineError, load_site_releases, newest_in_series, parse_releases
from slurm_factory.catalog.toolchains import ArchSupport, get_toolchain
from slurm_factory.catalog.upgrades import check_upgrade, upgrade_sources
from slurm_factory.exceptions import EXIT_USAGE, ConfigurationError

SHARED_RELEASES = Path("/work/shared/data/slurm-releases.tsv")
SHA_24_11_5 = "e1a5547edd212c38b5e3230a284133f777b32746551f094aaa81cc4af375e332"
A_SHA = "a" * 64
B_SHA = "b" * 64

# The toolchain table of docs/toolchains.md: name -> (OS, base image, GCC major, glibc).
SPEC_TOOLCHAINS = {
    "resolute": ("Ubuntu 26.04", "ubuntu:resolute", "15", "2.42"),
    "noble": ("Ubuntu 24.04", "ubuntu:noble", "13", "2.39"),
    "jammy": ("Ubuntu 22.04", "ubuntu:jammy", "11", "2.35"),
    "rockylinux10": ("Rocky Linux 10", "rockylinux/rockylinux:10", "14", "2.39"),
    "rockylinux9": ("Rocky Linux 9", "rockylinux/rockylinux:9", "11", "2.34"),
    "rockylinux8": ("Rocky Linux 8", "rockylinux/rockylinux:8", "8", "2.28"),
    "trixie": ("Debian 13", "debian:trixie", "14", "2.41"),
    "bookworm": ("Debian 12", "debian:bookworm", "12", "2.36"),
}


def _read_shared_tsv_independently() -> dict[str, tuple[str, str]]:
    """tag -> (sha256, date) from the shared data file, parsed without the code under test."""
    rows: dict[str, tuple[str, str]] = {}
    for line in SHARED_RELEASES.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        tag, sha256, date = line.split("\t")
        rows[tag] = (sha256, date)
    return rows


# --- series and exact pins -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("series", "expected_version", "expected_tag"),
    [
        ("23.11", "23.11.11", "23-11-11-1"),
        ("24.05", "24.05.8", "24-05-8-1"),
        ("24.11", "24.11.7", "24-11-7-1"),
        ("25.05", "25.05.8", "25-05-8-1"),
        ("25.11", "25.11.7", "25-11-7-1"),
        ("26.05", "26.05.3", "26-05-3-1"),
    ],
)
def test_series_resolves_to_its_newest_patch_release(series: str, expected_version: str, expected_tag: str) -> None:
    release = resolve_release(series)
    assert release.version == expected_version
    assert release.tag == expected_tag
    assert release.series == series


def test_series_newest_patch_is_the_maximum_patch_of_the_shared_data() -> None:
    rows = _read_shared_tsv_independently()
    for series in ("23.11", "24.11", "25.11", "26.05"):
        prefix = series.replace(".", "-") + "-"
        newest_tag = max(
            (tag for tag in rows if tag.startswith(prefix)), key=lambda tag: tuple(int(p) for p in tag.split("-"))
        )
        assert resolve_release(series).tag == newest_tag


def test_newest_patch_compares_numerically_not_lexically() -> None:
    # "23.11.9" sorts after "23.11.11" as text; the newest 23.11 release is 11.
    assert resolve_release("23.11").key == (23, 11, 11, 1)
    assert resolve_release("23.11.9") < resolve_release("23.11.10") < resolve_release("23.11.11")


def test_exact_pin_resolves_to_that_release_with_its_known_sha256() -> None:
    release = resolve_release("24.11.5")
    assert release.tag == "24-11-5-1"
    assert release.sha256 == SHA_24_11_5
    assert release.version == "24.11.5"
    assert release.series == "24.11"
    assert release.key == (24, 11, 5, 1)
    assert release.date == dt.date(2025, 5, 7)


def test_exact_pin_of_patch_zero_is_not_treated_as_a_series() -> None:
    assert resolve_release("25.11.0").tag == "25-11-0-1"
    assert resolve_release("25.11").tag != "25-11-0-1"


def test_requested_version_is_stripped_of_surrounding_whitespace() -> None:
    assert resolve_release("  24.11.5\n").tag == "24-11-5-1"


@pytest.mark.parametrize("requested", ["24.11.5.1", "24.11.x", "2024.11", "24.1", "24", "v24.11", "24-11-5-1", ""])
def test_malformed_version_is_a_configuration_error_listing_known_series(requested: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        resolve_release(requested)
    assert caught.value.exit_code == EXIT_USAGE
    message = str(caught.value)
    assert "--slurm-version" in message
    for series in ("23.11", "24.11", "25.11", "26.05"):
        assert series in message


def test_unknown_series_is_a_configuration_error_listing_known_series() -> None:
    with pytest.raises(ConfigurationError) as caught:
        resolve_release("22.05")
    message = str(caught.value)
    assert "--slurm-version" in message
    assert "'22.05'" in message
    assert ", ".join(known_series()) in message


def test_unknown_patch_is_a_configuration_error_listing_the_series_releases() -> None:
    with pytest.raises(ConfigurationError) as caught:
        resolve_release("24.11.99")
    message = str(caught.value)
    assert "--slurm-version" in message
    assert "24.11.0, 24.11.1, 24.11.2, 24.11.3, 24.11.4, 24.11.5, 24.11.6, 24.11.7" in message
    assert "25.11" not in message


def test_known_series_are_sorted_and_include_every_series_spec_names() -> None:
    series = known_series()
    assert series == sorted(series)
    assert series == ["23.11", "24.05", "24.11", "25.05", "25.11", "26.05"]


def test_newest_in_series_is_none_for_an_unknown_series() -> None:
    assert newest_in_series("99.99") is None
    newest = newest_in_series("26.05")
    assert newest is not None
    assert newest.version == "26.05.3"


# --- the shipped data equals the shared data -----------------------------------------------------------------------


def test_package_release_data_equals_shared_release_data_parsed() -> None:
    shared = parse_releases(SHARED_RELEASES.read_text(encoding="utf-8"))
    assert load_releases() == shared


def test_every_shared_release_is_in_the_package_with_identical_sha256_and_date() -> None:
    expected = _read_shared_tsv_independently()
    loaded = {release.tag: (release.sha256, release.date.isoformat()) for release in load_releases()}
    assert loaded == expected
    assert len(load_releases()) == len(expected) == 50


def test_every_shared_release_resolves_by_exact_pin_to_its_sha256() -> None:
    for tag, (sha256, _) in _read_shared_tsv_independently().items():
        major, minor, patch, _suffix = tag.split("-")
        release = resolve_release(f"{major}.{minor}.{patch}")
        assert release.tag == tag
        assert release.sha256 == sha256


def test_load_releases_is_sorted_oldest_first_and_without_duplicates() -> None:
    releases = load_releases()
    assert list(releases) == sorted(releases)
    assert len({release.tag for release in releases}) == len(releases)
    assert releases[0].tag == "23-11-0-1"
    assert releases[-1].tag == "26-05-3-1"


def test_package_data_is_readable_as_package_resource() -> None:
    assert read_data_text("slurm-releases.tsv") == SHARED_RELEASES.read_text(encoding="utf-8")


# --- SlurmRelease properties ---------------------------------------------------------------------------------------


def test_release_url_is_the_schedmd_github_archive_of_the_tag() -> None:
    release = resolve_release("24.11.5")
    assert release.url == "https://github.com/SchedMD/slurm/archive/refs/tags/slurm-24-11-5-1.tar.gz"
    assert release.archive_name == "slurm-24-11-5-1.tar.gz"
    assert release.url.endswith("/" + release.archive_name)


def test_release_properties_zero_pad_series_and_keep_patch_unpadded() -> None:
    release = SlurmRelease(key=(9, 5, 3, 2), tag="09-05-3-2", sha256=A_SHA, date=dt.date(2020, 1, 1))
    assert release.series == "09.05"
    assert release.version == "09.05.3"
    assert release.archive_name == "slurm-09-05-3-2.tar.gz"
    assert release.url == "https://github.com/SchedMD/slurm/archive/refs/tags/slurm-09-05-3-2.tar.gz"


def test_release_is_frozen() -> None:
    release = resolve_release("24.11.5")
    with pytest.raises(AttributeError):
        release.sha256 = B_SHA  # type: ignore[misc]


# --- parse_releases ------------------------------------------------------------------------------------------------


def test_parse_releases_skips_comments_and_blank_lines_and_sorts_by_numeric_key() -> None:
    text = (
        "# a comment\n"
        "\n"
        f"24-11-10-1\t{A_SHA}\t2025-01-02\n"
        "   \n"
        f"24-11-9-1\t{B_SHA}\t2025-01-01\n"
        f"24-11-9-2\t{A_SHA}\t2025-01-03\n"
    )
    releases = parse_releases(text)
    assert [release.tag for release in releases] == ["24-11-9-1", "24-11-9-2", "24-11-10-1"]
    assert releases[0].sha256 == B_SHA
    assert releases[0].date == dt.date(2025, 1, 1)
    assert releases[2].key == (24, 11, 10, 1)


def test_parse_releases_of_empty_text_is_empty() -> None:
    assert parse_releases("") == ()
    assert parse_releases("# only a comment\n\n") == ()


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(f"24-11-5-1\t{A_SHA}", id="two-fields"),
        pytest.param(f"24-11-5-1\t{A_SHA}\t2025-05-07\textra", id="four-fields"),
        pytest.param(f"24-11-5-1 {A_SHA} 2025-05-07", id="spaces-not-tabs"),
        pytest.param(f"24.11.5\t{A_SHA}\t2025-05-07", id="dotted-tag"),
        pytest.param(f"24-11-5\t{A_SHA}\t2025-05-07", id="tag-without-packaging-suffix"),
        pytest.param(f"slurm-24-11-5-1\t{A_SHA}\t2025-05-07", id="tag-with-prefix"),
        pytest.param(f"24-11-5-a\t{A_SHA}\t2025-05-07", id="non-numeric-tag"),
        pytest.param(f"24-11-5-1\t{'a' * 63}\t2025-05-07", id="short-sha256"),
        pytest.param(f"24-11-5-1\t{'a' * 65}\t2025-05-07", id="long-sha256"),
        pytest.param(f"24-11-5-1\t{'g' * 64}\t2025-05-07", id="non-hex-sha256"),
        pytest.param("24-11-5-1\t\t2025-05-07", id="empty-sha256"),
        pytest.param(f"24-11-5-1\t{A_SHA}\t2025-13-45", id="impossible-date"),
        pytest.param(f"24-11-5-1\t{A_SHA}\tyesterday", id="non-date"),
    ],
)
def test_parse_releases_rejects_a_malformed_line(line: str) -> None:
    text = f"# header\n23-11-0-1\t{B_SHA}\t2023-11-21\n{line}\n"
    with pytest.raises(ValueError):
        parse_releases(text)


def test_parse_releases_error_names_the_line_number() -> None:
    text = f"# header\n23-11-0-1\t{B_SHA}\t2023-11-21\n24-11-5-1\t{A_SHA}\n"
    with pytest.raises(ReleaseLineError, match=r"^line 3: expected 3 tab-separated fields") as caught:
        parse_releases(text)
    assert caught.value.number == 3


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("26.05.5\t{sha}\t2026-10-01", "is not a release tag"),
        ("26-05-5-1\t{short}\t2026-10-01", "is not a sha256"),
        ("26-05-5-1\t{upper}\t2026-10-01", "is not a sha256"),
        ("26-05-5-1\t{sha}\t01/10/2026", "is not a release date"),
        ("26-05-5-1\t{sha}\t1970-01-01", "is not a release date"),
        ("26-05-5-1\t{sha}\t2026-02-30", "is not a release date"),
        ("\uff12\uff16-05-5-1\t{sha}\t2026-10-01", "is not a release tag"),
        ("26-05-4-1\t{sha}\t2026-10-01", "26-05-4-1 is listed already, on line 2"),
    ],
)
def test_a_site_releases_file_line_is_refused_with_its_number(tmp_path: Path, line: str, problem: str) -> None:
    site = tmp_path / "releases.tsv"
    bad = line.format(sha=A_SHA, short=A_SHA[:60], upper=A_SHA.upper())
    site.write_text(f"# our releases\n26-05-4-1\t{B_SHA}\t2026-09-01\n{bad}\n", encoding="utf-8")

    with pytest.raises(ConfigurationError, match=rf"^--releases-file {re.escape(str(site))}:3: .*{problem}"):
        load_site_releases(site)


def test_a_site_releases_file_may_start_with_a_byte_order_mark_and_have_indented_comments(tmp_path: Path) -> None:
    site = tmp_path / "releases.tsv"
    site.write_text(f"\ufeff# ours\n   # indented\n26-05-5-1\t{A_SHA}\t2026-10-01\n", encoding="utf-8")

    assert [release.tag for release in load_site_releases(site)] == ["26-05-5-1"]


def test_a_site_release_is_merged_over_the_catalog_and_resolved_with_its_sha256(tmp_path: Path) -> None:
    site = tmp_path / "releases.tsv"
    site.write_text(f"26-05-5-1\t{A_SHA}\t2026-10-01\n", encoding="utf-8")

    release = resolve_release("26.05.5", load_site_releases(site))
    newest = resolve_release("26.05", load_site_releases(site))

    assert (release.tag, release.sha256, release.origin) == ("26-05-5-1", A_SHA, str(site))
    assert newest == release
    with pytest.raises(ConfigurationError, match="no such release"):
        resolve_release("26.05.5")  # the shipped catalog alone does not know it


def test_a_site_line_that_contradicts_the_catalog_is_refused(tmp_path: Path) -> None:
    shipped = resolve_release("24.11.5")
    site = tmp_path / "releases.tsv"
    site.write_text(f"{shipped.tag}\t{A_SHA}\t2025-05-07\n", encoding="utf-8")

    with pytest.raises(ConfigurationError, match=f"release {shipped.tag} has sha256 {A_SHA}, the catalog's is"):
        load_site_releases(site)


# --- toolchains ----------------------------------------------------------------------------------------------------


def test_all_eight_toolchains_are_present_in_spec_table_order() -> None:
    assert toolchain_names() == list(SPEC_TOOLCHAINS)
    assert len(load_toolchains()) == 8


@pytest.mark.parametrize(("name", "expected"), list(SPEC_TOOLCHAINS.items()))
def test_toolchain_matches_spec_table(name: str, expected: tuple[str, str, str, str]) -> None:
    os_name, base_image, gcc, glibc = expected
    toolchain = get_toolchain(name)
    assert toolchain.name == name
    assert toolchain.os == os_name
    assert toolchain.base_image == base_image
    assert toolchain.gcc == gcc
    assert toolchain.glibc == glibc


@pytest.mark.parametrize(
    ("name", "os_id", "family"),
    [
        ("resolute", "ubuntu", "apt"),
        ("noble", "ubuntu", "apt"),
        ("jammy", "ubuntu", "apt"),
        ("trixie", "debian", "apt"),
        ("bookworm", "debian", "apt"),
        ("rockylinux10", "rocky", "dnf"),
        ("rockylinux9", "rocky", "dnf"),
        ("rockylinux8", "rocky", "dnf"),
    ],
)
def test_toolchain_os_id_and_package_family(name: str, os_id: str, family: str) -> None:
    toolchain = get_toolchain(name)
    assert toolchain.os_id == os_id
    assert toolchain.family == family
    assert toolchain.packages == load_families()[family]
    assert toolchain.native.build_packages
    assert toolchain.native.runtime_packages


@pytest.mark.parametrize(
    ("name", "supports_gpu"),
    [
        ("resolute", True),
        ("noble", True),
        ("trixie", True),
        ("bookworm", True),
        ("jammy", False),
        ("rockylinux10", False),
        ("rockylinux9", False),
        ("rockylinux8", False),
    ],
)
def test_native_gpu_support_follows_the_os_packaging_of_nvml_headers(name: str, *, supports_gpu: bool) -> None:
    assert get_toolchain(name).native.supports_gpu is supports_gpu


def test_both_package_families_are_defined() -> None:
    families = load_families()
    assert set(families) == {"apt", "dnf"}
    assert "patchelf" in families["apt"].toolchain_packages
    assert "patchelf" in families["dnf"].toolchain_packages


def test_unknown_toolchain_is_a_configuration_error_listing_every_toolchain() -> None:
    with pytest.raises(ConfigurationError) as caught:
        get_toolchain("centos7")
    assert caught.value.exit_code == EXIT_USAGE
    message = str(caught.value)
    assert "--toolchain" in message
    assert "'centos7'" in message
    for name in SPEC_TOOLCHAINS:
        assert name in message


def test_toolchain_lookup_is_case_sensitive() -> None:
    with pytest.raises(ConfigurationError, match="--toolchain"):
        get_toolchain("Noble")


def test_toolchain_is_frozen() -> None:
    toolchain = get_toolchain("noble")
    with pytest.raises(ValueError):
        toolchain.base_image = "ubuntu:latest"


# --- compilers -----------------------------------------------------------------------------------------------------


def test_gcc_catalog_lists_the_build_compiler_versions() -> None:
    catalog = load_gcc_catalog()
    assert "10.5.0" in catalog.versions
    assert "13.4.0" in catalog.versions
    assert set(catalog.languages) >= {"c", "c++"}


def test_known_gcc_version_is_accepted() -> None:
    assert check_gcc_version("13.4.0") == "13.4.0"


def test_unknown_gcc_version_is_a_configuration_error_listing_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as caught:
        check_gcc_version("9.9.9")
    message = str(caught.value)
    assert "--compiler-version" in message
    for version in load_gcc_catalog().versions:
        assert version in message


def test_sources_from_the_arch_image_need_a_cross_toolchain_and_that_image() -> None:
    with pytest.raises(ValueError, match="foreign_apt_sources needs cross: true and the arch's base_image"):
        ArchSupport(engines=("native",), foreign_apt_sources=True, base_image="arm64v8/ubuntu:noble")
    with pytest.raises(ValueError, match="foreign_apt_sources needs"):
        ArchSupport(engines=("native",), cross=True, foreign_apt_sources=True)
    ubuntu = {name: get_toolchain(name).arches["arm64"] for name in ("resolute", "noble", "jammy")}
    assert all(support.cross and support.foreign_apt_sources for support in ubuntu.values())
    assert not get_toolchain("trixie").arches["arm64"].foreign_apt_sources, "Debian's archive carries arm64"


# --- upgrades -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("series", "sources"),
    [
        ("23.11", ["22.05", "23.02"]),
        ("24.05", ["23.02", "23.11"]),
        ("24.11", ["23.02", "23.11", "24.05"]),
        ("25.11", ["24.05", "24.11", "25.05"]),
        ("26.11", ["25.05", "25.11", "26.05"]),  # a series only a site's releases file knows
    ],
)
def test_a_release_accepts_the_previous_two_majors_and_three_from_24_11_on(series: str, sources: list[str]) -> None:
    assert upgrade_sources(series) == sources


@pytest.mark.parametrize(("old", "new"), [("24.11.5", "25.11.7"), ("24.11.5", "24.11.7"), ("23.11.11", "24.11.5")])
def test_supported_upgrades_pass(old: str, new: str) -> None:
    check_upgrade(old, new)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("22.05.8", "24.11.5", "from its own patch releases and from 23.02, 23.11, 24.05"),
        ("25.11.7", "24.11.5", "is a downgrade"),
        ("24.11.7", "24.11.5", "is a downgrade"),
        ("24.11.5", "24.11.5", "an upgrade needs an older one"),
        ("23.11.11", "25.11.7", "from its own patch releases and from 24.05, 24.11, 25.05"),
    ],
)
def test_unsupported_upgrades_are_refused_naming_the_supported_range(old: str, new: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)) as caught:
        check_upgrade(old, new)
    assert caught.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize("old", ["24.11", "24.11.x", "\uff12\uff14.11.5", "24.11.5; rm", ""])
def test_an_old_release_that_is_not_a_release_is_refused_before_comparing(old: str) -> None:
    with pytest.raises(ConfigurationError, match=r"is not a Slurm release such as 24\.11\.5"):
        check_upgrade(old, "25.11.7")


def test_a_packaging_suffix_does_not_change_which_release_it_is() -> None:
    check_upgrade("24.11.5-1", "25.11.7")
    with pytest.raises(ConfigurationError, match="an upgrade needs an older one"):
        check_upgrade("25.11.7-2", "25.11.7")


def test_a_series_a_site_knows_takes_its_place_among_the_majors() -> None:
    # 26.02 between 25.11 and 26.05: 26.05's window moves along (the previous three majors).
    assert upgrade_sources("26.05", known=("26.02",)) == ["25.05", "25.11", "26.02"]
