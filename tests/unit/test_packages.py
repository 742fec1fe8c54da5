"""`--package deb`: the request's refusals, the version rules, the rendered debian/ directory (what lintian and
dpkg read), the stored set and the repository index that verification reads."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tarfile
from pathlib import Path

import pytest

from slurm_factory.catalog.deb_packages import load_deb_packages
from slurm_factory.config import Settings
from slurm_factory.exceptions import BuildError, ConfigurationError, VerificationError
from slurm_factory.packages import store
from slurm_factory.packages.apt_repository import (
    PUBLIC_KEY_FILE,
    SIGNED_FILES,
    UNSIGNED_RELEASE,
    AptPublication,
    add_to_pool,
    check_repository_key,
    sign_release,
)
from slurm_factory.packages.deb import (
    LINE_WIDTH,
    description_lines,
    make_package_plan,
    package_install_dirs,
    render_debian_files,
)
from slurm_factory.packages.verify_apt import previous_release, read_index, tampered_copy
from slurm_factory.packages.versions import compare_versions, debian_version
from slurm_factory.plan import native
from slurm_factory.plan.model import PackagePlan
from slurm_factory.request import BuildRequest, make_request
from slurm_factory.secret_input import decode_private_key
from slurm_factory.signing import SigningError, SigningKey, verify_signature
from tests.gpg_keys import Keys
from tests.gpg_keys import keys as keys  # the session fixture

NATIVE_DEB = {"engine": "native", "toolchain": "trixie", "slurm_version": "24.11.5", "package": "deb"}


def _request(**options: object) -> BuildRequest:
    return make_request(**{**NATIVE_DEB, **options})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"engine": "spack"}, "needs the native engine"),
        ({"toolchain": "rockylinux9"}, ".rpm packages are not built yet"),
        ({"package_release": "0"}, "from 1 to 9999"),
        ({"package_release": "two"}, "from 1 to 9999"),
        ({"package_release": "\u00b2"}, "from 1 to 9999"),  # a Unicode digit int() would not take
        ({"package_release": "\u0661"}, "from 1 to 9999"),  # an Arabic-Indic one it would
        ({"package_release": " 2"}, "from 1 to 9999"),
        ({"package_release": "01"}, "from 1 to 9999"),
        ({"package": "tarball", "package_release": "2"}, "--package is tarball"),
        ({"verify": True}, "needs --publish slurm"),
        ({"signing_key": "0x" + "A" * 16}, "which only --publish writes"),
        ({"upgrade_from": "/nonexistent/old.tar.gz"}, "packages are upgraded from the earlier release"),
    ],
)
def test_a_package_request_that_cannot_be_built_is_refused_naming_why(options: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(words)):
        _request(**options)


def test_packages_are_not_published_to_s3_yet() -> None:
    with pytest.raises(ConfigurationError, match="s3:// is not supported for packages"):
        _request(publish_url="s3://bucket/apt", publish="slurm", signing_key="0x" + "A" * 16)


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("24.11.5-1+sf.trixie", "24.11.5-2+sf.trixie"),  # --package-release bumps a rebuild
        ("24.11.5-9+sf.trixie", "24.11.5-10+sf.trixie"),  # numerically, not as text
        ("24.11.5-1", "24.11.5-1+sf.trixie"),  # above SchedMD's own package of the same release
        ("24.11.5-2+sf.trixie", "24.11.5+tag2-1+sf.trixie"),  # a re-tag above any rebuild of the first tag
        ("24.11.5+tag2-1+sf.trixie", "24.11.6-1+sf.trixie"),  # below the next patch release
        ("24.11.6-1+sf.trixie", "25.05.0-1+sf.trixie"),
        ("1.0~rc1-1", "1.0-1"),  # dpkg's tilde sorts before the end
        ("9.9-1", "1:0.1-1"),  # an epoch wins
    ],
)
def test_versions_sort_as_dpkg_sorts_them(older: str, newer: str) -> None:
    assert compare_versions(older, newer) == -1
    assert compare_versions(newer, older) == 1
    assert compare_versions(newer, newer) == 0


def test_the_package_version_names_the_release_the_rebuild_and_the_codename() -> None:
    request = _request(package_release="3")
    assert debian_version(request.slurm, release=request.package_release, codename="trixie") == "24.11.5-3+sf.trixie"


def test_the_packages_are_configured_for_the_fhs_layout_with_the_tarballs_other_options() -> None:
    request = _request()
    packaged = native.configure_options(request, install_dirs=package_install_dirs(request))
    tree = native.configure_options(request)
    assert "--prefix=/usr" in packaged and "--libdir=/usr/lib/x86_64-linux-gnu" in packaged
    assert "--sysconfdir=/etc/slurm" in packaged
    unchanged = [option for option in tree if not option.startswith(("--prefix", "--with-pam_dir"))]
    assert [option for option in packaged if option in unchanged] == unchanged


def _debian(**options: object) -> dict[str, str]:
    return {name: plan_file.content for name, plan_file in render_debian_files(_request(**options)).items()}


def test_descriptions_and_changelog_lines_fit_lintians_width() -> None:
    debian = _debian()
    descriptions = [line for line in debian["control"].splitlines() if line.startswith(("Description:", " "))]
    for name, lines in (("control", descriptions), ("changelog", debian["changelog"].splitlines())):
        long = [line for line in lines if len(line) > LINE_WIDTH + 1]
        assert not long, (name, long)
    assert "Package: slurm-smd-slurmctld" in debian["control"]
    assert debian["changelog"].startswith("slurm-smd (24.11.5-1+sf.trixie) trixie; urgency=medium")


def test_description_paragraphs_are_wrapped_and_separated() -> None:
    package = next(package for package in load_deb_packages().packages if package.name == "slurm-smd")
    lines = description_lines(package)
    assert "" in lines and lines[0] and lines[-1]
    assert max(map(len, lines)) <= LINE_WIDTH - 1
    assert " ".join(line for line in lines if line).startswith("Slurm is a fault-tolerant")


def test_every_lintian_override_names_its_reason_in_a_comment_above_it() -> None:
    debian = _debian()
    overrides = {name: text for name, text in debian.items() if name.endswith(".lintian-overrides")}
    catalog = load_deb_packages().lintian_overrides
    assert {f"{package}.lintian-overrides" for entry in catalog for package in entry.packages} == set(overrides)
    for name, text in overrides.items():
        lines = text.splitlines()
        tags = [index for index, line in enumerate(lines) if line and not line.startswith("#")]
        assert tags, name
        for index in tags:
            assert index > 0 and lines[index - 1].startswith("# "), (name, lines[index])
    assert (
        "custom-library-search-path RUNPATH /usr/lib/x86_64-linux-gnu/slurm *"
        in overrides["slurm-smd-client.lintian-overrides"]
    )


def test_the_units_run_the_daemons_from_usr_sbin_with_etc_slurm() -> None:
    debian = _debian()
    units = {name: text for name, text in debian.items() if name.endswith(".service")}
    assert set(units) == {
        f"slurm-smd-{unit}.{unit}.service" for unit in ("slurmctld", "slurmd", "slurmdbd", "slurmrestd", "sackd")
    }
    for name, text in units.items():
        assert "@" not in text.replace("@slurm-factory", ""), name
        daemon = name.split(".")[1]
        assert f"ExecStart=/usr/sbin/{daemon} " in text, name
        assert "Environment=SLURM_CONF=/etc/slurm/slurm.conf" in text, name
        assert "slurm-factory-setup" not in text, name
    assert "User=slurmrestd" in units["slurm-smd-slurmrestd.slurmrestd.service"]


def test_the_examples_a_site_copies_name_etc_slurm_and_no_setup_script() -> None:
    debian = _debian()
    assert debian["slurm-smd.examples"].splitlines() == [
        "debian/examples/slurm.conf",
        "debian/examples/cgroup.conf",
        "debian/examples/slurmdbd.conf",
    ]
    for name in ("slurm.conf", "cgroup.conf", "slurmdbd.conf"):
        text = debian[f"examples/{name}"]
        assert "@SLURM_CONF_DIR@" not in text and "slurm-factory-setup" not in text, name
    assert "AuthAltParameters=jwt_key=/etc/slurm/jwt_hs256.key" in debian["examples/slurm.conf"]


def test_the_rules_never_start_stop_or_restart_a_daemon_from_dpkg() -> None:
    rules = _debian()["rules"]
    lines = [line.strip() for line in rules.splitlines() if "dh_installsystemd -p" in line]
    assert len(lines) == 5
    for line in lines:
        assert {"--no-start", "--no-stop-on-upgrade", "--no-restart-after-upgrade"} <= set(line.split()), line


def test_with_gpu_the_vendor_libraries_the_plugins_link_are_no_dependency() -> None:
    plain = render_debian_files(_request())["rules"].content
    gpu = render_debian_files(_request(gpu=True))["rules"].content
    assert "override_dh_shlibdeps" not in plain
    (line,) = (line for line in gpu.splitlines() if line.lstrip().startswith("dh_shlibdeps"))
    assert line.split() == ["dh_shlibdeps", "-Xgpu_nvml.so", "-Xgpu_rsmi.so"]
    configure = native.configure_options(_request(gpu=True), install_dirs=package_install_dirs(_request()))
    assert "--with-nvml" in configure  # the plugins are built, only their vendor library is not depended on


SITE_MAINTAINER = "HPC Team <hpc@example.org>"


def test_the_maintainer_a_site_gives_is_in_control_and_changelog_and_lintian_checks_it(tmp_path: Path) -> None:
    default = render_debian_files(_request())
    assert "Maintainer: slurm-factory <slurm-factory@localhost>" in default["control"].content
    given = render_debian_files(_request(package_maintainer=f" {SITE_MAINTAINER} "))
    assert f"Maintainer: {SITE_MAINTAINER}\n" in given["control"].content
    assert f" -- {SITE_MAINTAINER}  " in given["changelog"].content
    settings = Settings(home=tmp_path)
    placeholder = make_package_plan(_request(), settings)
    site = make_package_plan(_request(package_maintainer=SITE_MAINTAINER), settings)
    assert site.build_id != placeholder.build_id

    def lintian_line(plan: PackagePlan) -> str:
        script = plan.context_files()["build-deb.sh"].content
        return next(line for line in script.splitlines() if "--suppress-tags" in line or '"$changes" >' in line)

    assert "bogus-mail-host" in lintian_line(placeholder)  # only the placeholder's tags are suppressed
    assert "--suppress-tags" not in lintian_line(site)


@pytest.mark.parametrize(
    "value",
    [
        "hpc@example.org",
        "HPC, Admins <hpc@example.org>",
        "HPC <hpc@example.org>\nX-Injected: yes",
        "HPC <hpc@example.org> <other@example.org>",
        "H" * 190 + " <hpc@example.org>",
        "%(touch /tmp/pwned) <a@example.org>",  # a spec runs it
        "%{lua:print('Requires: evil')} <a@example.org>",
        "A <%_libdir@example.org>",
        "${Newline}Depends: evil <a@example.org>",  # dpkg-gencontrol substitutes it
        "X\u2028Version: 9 <a@example.org>",  # a line separator str.splitlines() honours
        "A\u200bB <a@example.org>",  # invisible
        "J\udcf6rg <j@example.org>",  # an undecodable byte from the command line
        "Me <me@localhost>",  # lintian's bogus-mail-host error, after the whole compile
        "A <a@-example-.org>",
    ],
)
def test_a_maintainer_that_is_not_a_plain_name_and_address_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape("expected 'Name <user@domain.tld>'")) as refused:
        _request(package_maintainer=value)
    assert refused.value.hint is not None and "--package-maintainer 'HPC Team <hpc@example.org>'" in refused.value.hint


def test_a_name_in_any_script_is_a_maintainer_and_the_placeholder_given_is_the_default() -> None:
    assert _request(package_maintainer="Jörg Müller (HPC) <j@uni-x.de>").package_maintainer == (
        "Jörg Müller (HPC) <j@uni-x.de>"
    )
    assert _request(package_maintainer=" slurm-factory <slurm-factory@localhost> ").package_maintainer is None


def test_a_maintainer_for_the_tarball_alone_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="--package is tarball"):
        _request(package="tarball", package_maintainer=SITE_MAINTAINER)


def test_a_patch_is_named_in_the_changelog(tmp_path: Path) -> None:
    patch = tmp_path / "site-fix.patch"
    patch.write_text("--- a/README\n+++ b/README\n@@ -1 +1 @@\n-a\n+b\n", encoding="utf-8")
    changelog = _debian(patches=[str(patch)])["changelog"]
    joined = " ".join(line.strip() for line in changelog.splitlines())
    assert re.search(r"\* Patch \d+-site-fix\.patch \(site\), sha256 [0-9a-f]{16}\.", joined), joined


def test_the_package_set_has_its_own_identity_which_follows_the_release(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    first, second = (make_package_plan(_request(package_release=n), settings) for n in ("1", "2"))
    assert first.build_id != second.build_id
    assert first.artifact_path.parent == tmp_path / "builds" / "packages"
    assert make_package_plan(_request(package_release="1"), settings).build_id == first.build_id


def _tree_tar(tmp_path: Path, names: list[str]) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in names:
        (tree / name).write_bytes(name.encode())
    tar = tmp_path / "tree.tar"
    with tarfile.open(tar, "w") as archive:
        for name in names:
            archive.add(tree / name, arcname=name)
    return tar


def test_the_stored_set_records_every_package_and_refuses_a_changed_file(tmp_path: Path) -> None:
    plan = make_package_plan(_request(), Settings(home=tmp_path))
    names = ["slurm-smd_24.11.5-1+sf.trixie_amd64.deb", "slurm-smd-client_24.11.5-1+sf.trixie_amd64.deb"]
    meta = {
        "packages.tsv": "".join(f"{name.split('_')[0]}\t24.11.5-1+sf.trixie\t{name}\n" for name in names),
        "lintian.txt": "O: slurm-smd: groff-message x\nN: why\nI: slurm-smd: hardening-no-bindnow x\n",
    }
    stored = store.write_package_set(plan, _tree_tar(tmp_path, names), meta, durations={})
    assert stored.manifest["lintian"] == {"O": 1, "I": 1}
    assert store.find(plan.artifact_path) is not None
    (plan.artifact_path / names[0]).write_bytes(b"changed")
    assert store.find(plan.artifact_path) is None
    (tmp_path / "other").mkdir()
    empty = _tree_tar(tmp_path / "other", [])
    with pytest.raises(BuildError, match="listed"):
        store.write_package_set(plan, empty, meta, durations={})


def test_a_package_file_produced_or_listed_twice_is_refused(tmp_path: Path) -> None:
    plan = make_package_plan(_request(), Settings(home=tmp_path))
    name = "slurm-smd_24.11.5-1+sf.trixie_amd64.deb"
    row = f"slurm-smd\t24.11.5-1+sf.trixie\t{name}\n"
    tar = tmp_path / "twice.tar"
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / name).write_bytes(b"one build")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / name).write_bytes(b"another build")
    with tarfile.open(tar, "w") as archive:
        archive.add(tmp_path / "a" / name, arcname=f"a/{name}")
        archive.add(tmp_path / "b" / name, arcname=f"b/{name}")
    with pytest.raises(BuildError, match=f"produced {re.escape(name)} twice"):
        store.write_package_set(plan, tar, {"packages.tsv": row}, durations={})
    once = _tree_tar(tmp_path / "a", [name])
    with pytest.raises(BuildError, match=f"listed {re.escape(name)} twice"):
        store.write_package_set(plan, once, {"packages.tsv": row * 2}, durations={})
    assert store.find(plan.artifact_path) is None


def test_a_pool_refuses_a_second_file_of_one_name_with_other_bytes(tmp_path: Path) -> None:
    plan = make_package_plan(_request(), Settings(home=tmp_path))
    name = "slurm-smd_24.11.5-1+sf.trixie_amd64.deb"
    meta = {"packages.tsv": f"slurm-smd\t24.11.5-1+sf.trixie\t{name}\n"}
    stored = store.write_package_set(plan, _tree_tar(tmp_path, [name]), meta, durations={})
    pool = tmp_path / "pool"
    assert add_to_pool(stored, pool) == [name]
    assert add_to_pool(stored, pool) == []  # the same bytes again: nothing to add
    (pool / name).write_bytes(b"another build")
    with pytest.raises(ConfigurationError, match=r"already has slurm-smd_24\.11\.5-1") as refused:
        add_to_pool(stored, pool)
    assert refused.value.hint is not None and "bump --package-release" in refused.value.hint


def test_a_refused_set_leaves_nothing_of_itself_in_the_pool(tmp_path: Path) -> None:
    plan = make_package_plan(_request(), Settings(home=tmp_path))
    names = ["slurm-smd_24.11.5-1+sf.trixie_amd64.deb", "slurm-smd-client_24.11.5-1+sf.trixie_amd64.deb"]
    meta = {"packages.tsv": "".join(f"{name.split('_')[0]}\t24.11.5-1+sf.trixie\t{name}\n" for name in names)}
    stored = store.write_package_set(plan, _tree_tar(tmp_path, names), meta, durations={})
    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / names[1]).write_bytes(b"another build of the second package")
    with pytest.raises(ConfigurationError, match="already has slurm-smd-client"):
        add_to_pool(stored, pool)
    assert sorted(path.name for path in pool.iterdir()) == [names[1]]


def _signed_dist(tmp_path: Path) -> Path:
    """A dist directory as a previous publication left it (signed) with the index script's new Release.new."""
    dist = tmp_path / "apt" / "dists" / "trixie"
    dist.mkdir(parents=True)
    for name in SIGNED_FILES:
        (dist / name).write_text(f"the previous {name}\n", encoding="utf-8")
    (dist / UNSIGNED_RELEASE).write_text("Origin: slurm-factory\nSuite: trixie\n", encoding="utf-8")
    return dist


def test_release_is_signed_beside_the_signed_files_and_renamed_over_them(keys: Keys, tmp_path: Path) -> None:
    dist = _signed_dist(tmp_path)
    key = keys.unprotected
    with SigningKey(key.long_id, decode_private_key(key.armored_secret)) as signer:
        sign_release(dist, signer)
    assert sorted(path.name for path in dist.iterdir()) == sorted(SIGNED_FILES)
    assert (dist / "Release").read_text(encoding="utf-8") == "Origin: slurm-factory\nSuite: trixie\n"
    valid, detail = verify_signature(dist / "Release", dist / "Release.gpg", key.public_file)
    assert valid, detail
    assert "Suite: trixie" in (dist / "InRelease").read_text(encoding="utf-8")


class _FailingSigner:
    """Signs Release.gpg, then fails on InRelease (a key that expired, an agent that died)."""

    def __init__(self, signer: SigningKey) -> None:
        self._signer = signer

    def sign_detached(self, path: Path, signature: Path) -> Path:
        return self._signer.sign_detached(path, signature)

    def sign_inline(self, path: Path, signed: Path) -> Path:
        raise SigningError(f"signing {path.name} failed")


def test_a_failed_signing_leaves_the_repository_signed_as_it_was(keys: Keys, tmp_path: Path) -> None:
    dist = _signed_dist(tmp_path)
    key = keys.unprotected
    signer = SigningKey(key.long_id, decode_private_key(key.armored_secret))
    with signer, pytest.raises(SigningError):
        sign_release(dist, _FailingSigner(signer))  # type: ignore[arg-type]
    for name in SIGNED_FILES:
        assert (dist / name).read_text(encoding="utf-8") == f"the previous {name}\n"
    assert sorted(path.name for path in dist.iterdir()) == sorted([*SIGNED_FILES, UNSIGNED_RELEASE])


def test_a_repository_keeps_the_key_it_was_first_signed_with(keys: Keys, tmp_path: Path) -> None:
    repository = tmp_path / "apt"
    repository.mkdir()
    shutil.copyfile(keys.unprotected.public_file, repository / PUBLIC_KEY_FILE)
    with SigningKey(keys.unprotected.long_id, decode_private_key(keys.unprotected.armored_secret)) as same:
        check_repository_key(repository, same)
    other = SigningKey(keys.unrelated.long_id, decode_private_key(keys.unrelated.armored_secret))
    with other, pytest.raises(ConfigurationError, match=f"signed by {keys.unprotected.long_id}, not by") as refused:
        check_repository_key(repository, other)
    assert refused.value.hint is not None and "another --publish-url" in refused.value.hint


def _publication(tmp_path: Path, stanzas: list[tuple[str, str]]) -> AptPublication:
    repository = tmp_path / "apt"
    index = repository / "dists" / "trixie" / "main" / "binary-amd64"
    index.mkdir(parents=True)
    text = "\n".join(f"Package: {name}\nVersion: {version}\nArchitecture: amd64\n" for name, version in stanzas)
    (index / "Packages").write_text(text, encoding="utf-8")
    digest = hashlib.sha256(text.encode()).hexdigest()
    release = repository / "dists" / "trixie"
    (release / "Release").write_text(
        f"Origin: slurm-factory\nSuite: trixie\nSHA256:\n {digest} {len(text)} main/binary-amd64/Packages\n",
        encoding="utf-8",
    )
    (release / "InRelease").write_text(
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nOrigin: slurm-factory\n", encoding="utf-8"
    )
    return AptPublication(repository, "trixie", repository / "key.asc", ())


def test_verification_upgrades_from_the_newest_earlier_release_of_the_same_slurm(tmp_path: Path) -> None:
    publication = _publication(
        tmp_path,
        [
            ("slurm-smd", "24.11.5-10+sf.trixie"),
            ("slurm-smd-client", "24.11.5-10+sf.trixie"),
            ("slurm-smd", "24.11.5-9+sf.trixie"),
            ("slurm-smd", "24.11.4-3+sf.trixie"),
            ("slurm-smd", "24.11.5-11+sf.trixie"),
        ],
    )
    releases = read_index(publication, "amd64")
    assert [release.version for release in releases] == [
        "24.11.4-3+sf.trixie",
        "24.11.5-9+sf.trixie",
        "24.11.5-10+sf.trixie",
        "24.11.5-11+sf.trixie",
    ]
    earlier = previous_release(releases, "24.11.5-11+sf.trixie", upstream="24.11.5")
    assert earlier is not None and earlier.version == "24.11.5-10+sf.trixie"
    assert earlier.packages == ("slurm-smd", "slurm-smd-client")
    assert previous_release(releases, "24.11.4-3+sf.trixie", upstream="24.11.4") is None


def test_an_index_that_is_not_the_one_release_names_is_not_read(tmp_path: Path) -> None:
    publication = _publication(tmp_path, [("slurm-smd", "24.11.5-1+sf.trixie")])
    index = publication.repository / "dists" / "trixie" / "main" / "binary-amd64" / "Packages"
    index.write_text(index.read_text(encoding="utf-8").replace("-1+", "-2+"), encoding="utf-8")
    with pytest.raises(VerificationError, match="changed after it was signed"):
        read_index(publication, "amd64")


def test_an_index_naming_something_that_is_not_a_package_is_refused(tmp_path: Path) -> None:
    publication = _publication(tmp_path, [("slurm-smd", "24.11.5-1+sf.trixie"), ("--reinstall", "1")])
    with pytest.raises(VerificationError, match="'--reinstall' '1', not a Debian package name"):
        read_index(publication, "amd64")


def test_the_tampered_copy_changes_the_signed_text_and_leaves_the_repository_alone(tmp_path: Path) -> None:
    publication = _publication(tmp_path, [("slurm-smd", "24.11.5-1+sf.trixie")])
    original = (publication.repository / "dists" / "trixie" / "InRelease").read_text(encoding="utf-8")
    copy = tampered_copy(publication, tmp_path / "tampered")
    changed = (copy / "dists" / "trixie" / "InRelease").read_text(encoding="utf-8")
    assert changed != original and "Origin: xslurm-factory" in changed
    assert "Origin: xslurm-factory" in (copy / "dists" / "trixie" / "Release").read_text(encoding="utf-8")
    assert (publication.repository / "dists" / "trixie" / "InRelease").read_text(encoding="utf-8") == original


def test_a_package_build_is_summarised_by_dry_run(tmp_path: Path) -> None:
    from slurm_factory.builder import build

    result = build(settings=Settings(home=tmp_path), dry_run=True, **NATIVE_DEB)  # type: ignore[arg-type]
    assert result.preflight is not None and result.package_plan is not None
    described = json.dumps(result.to_json())
    assert "slurm-smd 24.11.5-1+sf.trixie" in described and result.to_json()["dry_run"] is True
    assert result.to_json()["package_build_id"] == result.package_plan.build_id


@pytest.mark.parametrize("package", ["deb", "all"])
def test_plan_dir_holds_the_package_build_below_packages_and_the_tarball_only_when_it_is_built(
    tmp_path: Path, package: str
) -> None:
    from slurm_factory.builder import build

    directory = tmp_path / "context"
    options = {**NATIVE_DEB, "package": package}
    result = build(settings=Settings(home=tmp_path), dry_run=True, plan_dir=directory, **options)  # type: ignore[arg-type]
    assert result.package_plan is not None
    written = {str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_file()}
    package_files = result.package_plan.context_files()
    for name, plan_file in package_files.items():
        target = directory / "packages" / name
        assert target.read_text(encoding="utf-8") == plan_file.content, name
        assert target.stat().st_mode & 0o777 == plan_file.mode, name
    control = (directory / "packages" / "debian" / "control").read_text(encoding="utf-8")
    assert "Package: slurm-smd-slurmctld" in control
    # The packaging image starts FROM the toolchain image: its Dockerfile is there either way.
    assert (directory / "Dockerfile").read_text(encoding="utf-8") == result.plan.image.dockerfile
    assert (f"FROM {result.package_plan.toolchain_image.reference}") in package_files["Dockerfile"].content
    tarball_files = set(result.plan.context_files()) - {"Dockerfile"}
    if package == "deb":
        assert written == {"Dockerfile"} | {f"packages/{name}" for name in package_files}
    else:
        assert tarball_files <= written and (directory / "build-native.sh").is_file()


def test_dry_run_of_packages_prints_the_package_plan_and_each_file_plan_dir_writes() -> None:
    from typer.testing import CliRunner

    from slurm_factory import cli
    from slurm_factory.builder import build

    arguments = ["--engine", "native", "--toolchain", "trixie", "--slurm-version", "24.11.5", "--package", "deb"]
    printed = CliRunner().invoke(cli.app, ["build-slurm", *arguments, "--dry-run"])
    assert printed.exit_code == 0, printed.output
    planned = build(dry_run=True, **NATIVE_DEB)  # type: ignore[arg-type]
    assert planned.package_plan is not None
    assert f"# packages {planned.package_plan.build_id}: slurm-smd 24.11.5-1+sf.trixie (.deb)" in printed.stdout
    assert "bash /opt/slurm-factory/plan/build-deb.sh" in printed.stdout
    assert "# build " not in printed.stdout  # no tarball is built, so its plan is not shown
    for name, plan_file in planned.package_plan.context_files().items():
        assert f"packages/{name}" in printed.stdout and plan_file.content in printed.stdout, name


def test_depends_fields_name_every_alternative_and_its_constraint() -> None:
    from slurm_factory.packages.sbom import depended_on

    depends = "libc6 (>= 2.38), libmunge2 (>= 0.5.8), adduser, default-mta | mail-transport-agent, perl:any"
    assert depended_on(depends) == [
        ("libc6", ">= 2.38"),
        ("libmunge2", ">= 0.5.8"),
        ("adduser", ""),
        ("default-mta", ""),
        ("mail-transport-agent", ""),
        ("perl", ""),
    ]


def test_the_sets_sbom_lists_each_package_and_what_its_depends_name(tmp_path: Path) -> None:
    plan = make_package_plan(_request(), Settings(home=tmp_path))
    names = ["slurm-smd_24.11.5-1+sf.trixie_amd64.deb", "slurm-smd-client_24.11.5-1+sf.trixie_amd64.deb"]
    meta = {
        "packages.tsv": f"slurm-smd\t24.11.5-1+sf.trixie\t{names[0]}\tlibc6 (>= 2.38), munge\n"
        f"slurm-smd-client\t24.11.5-1+sf.trixie\t{names[1]}\tslurm-smd (= 24.11.5-1+sf.trixie), libc6 (>= 2.34)\n"
    }
    stored = store.write_package_set(plan, _tree_tar(tmp_path, names), meta, durations={})
    document = json.loads((stored.directory / "sbom.json").read_text(encoding="utf-8"))
    purls = {component["bom-ref"]: component.get("purl") for component in document["components"]}
    assert (
        purls["deb:slurm-smd-client"]
        == "pkg:deb/slurm-factory/slurm-smd-client@24.11.5-1%2Bsf.trixie?arch=amd64&distro=trixie"
    )
    assert purls["os:libc6"] == "pkg:deb/debian/libc6?distro=trixie" and "os:munge" in purls
    assert "os:slurm-smd" not in purls, "our own package is a component once, not an OS package"
    graph = {entry["ref"]: set(entry.get("dependsOn", [])) for entry in document["dependencies"]}
    assert graph["deb:slurm-smd-client"] == {"deb:slurm-smd", "os:libc6"}
    assert {"slurm", "deb:slurm-smd", "deb:slurm-smd-client"} <= graph["package-set"]
    first_text = (stored.directory / "sbom.json").read_text(encoding="utf-8")
    (tmp_path / "again").mkdir()
    again = store.write_package_set(plan, _tree_tar(tmp_path / "again", names), meta, durations={})
    assert (again.directory / "sbom.json").read_text(encoding="utf-8") == first_text, "the same set, the same SBOM"


def test_a_listed_file_name_that_leaves_the_sets_directory_is_refused(tmp_path: Path) -> None:
    plan = make_package_plan(_request(), Settings(home=tmp_path))
    (tmp_path / "empty").mkdir()
    empty = _tree_tar(tmp_path / "empty", [])
    for name in ("../../etc/passwd.deb", "sub/slurm-smd_1_amd64.deb", "slurm-smd.tar"):
        meta = {"packages.tsv": f"slurm-smd\t24.11.5-1+sf.trixie\t{name}\n"}
        with pytest.raises(BuildError, match=r"not a \.deb file name"):
            store.write_package_set(plan, empty, meta, durations={})
    good = "slurm-smd_24.11.5-1+sf.trixie_amd64.deb"
    meta = {"packages.tsv": f"slurm-smd\t24.11.5-1+sf.trixie\t{good}\n"}
    stored = store.write_package_set(plan, _tree_tar(tmp_path, [good]), meta, durations={})
    manifest = json.loads((stored.directory / "manifest.json").read_text(encoding="utf-8"))
    manifest["packages"][0]["file"] = "../manifest.json"
    (stored.directory / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert store.find(stored.directory) is None, "a manifest naming a file outside the set is not a stored set"


@pytest.mark.parametrize("link", ["packages/build-deb.sh", "Dockerfile", "packages"])
def test_plan_dir_refuses_a_link_inside_it_and_writes_nothing_through_it(tmp_path: Path, link: str) -> None:
    from slurm_factory.builder import build

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("the site's file\n", encoding="utf-8")
    directory = tmp_path / "context"
    (directory / "packages").mkdir(parents=True)
    target = directory / link
    if target.is_dir():
        target.rmdir()
    target.symlink_to(victim if link == "packages" else victim / "keep")
    with pytest.raises(ConfigurationError, match="holds a symbolic link"):
        build(settings=Settings(home=tmp_path / "home"), dry_run=True, plan_dir=directory, **NATIVE_DEB)  # type: ignore[arg-type]
    assert [path.name for path in victim.iterdir()] == ["keep"]
    assert (victim / "keep").read_text(encoding="utf-8") == "the site's file\n"


@pytest.mark.parametrize(("toolchain", "package"), [("jammy", "deb"), ("rockylinux9", "rpm")])
def test_gpu_packages_where_the_os_has_no_gpu_headers_hint_at_what_then_works(toolchain: str, package: str) -> None:
    with pytest.raises(ConfigurationError, match="--gpu with --engine native is not available") as refused:
        _request(toolchain=toolchain, package=package, gpu=True)
    hint = refused.value.hint or ""
    assert hint.startswith("drop --gpu") and "trixie" in hint and "--engine spack" not in hint.split(";")[0]
    _request(toolchain=toolchain, package=package)  # what the hint says first: without --gpu it is accepted
