"""The artifact writer: a fake installed tree (shaped like Docker's get_archive of the install prefix) becomes one
tarball with a single top-level directory, the generated files, root ownership and its sidecars, published
atomically. The generated setup script is run for real on the unpacked tree."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from slurm_factory import __version__
from slurm_factory.artifact import build_manifest, debug_companion, sidecar, write_artifact
from slurm_factory.catalog import resolve_release
from slurm_factory.config import Settings
from slurm_factory.patches import own_patches
from slurm_factory.plan import BuildPlan, make_plan
from slurm_factory.request import make_request
from slurm_factory.store import link_contract_names

ROOT = "slurm-24.11.5-trixie"
ARTIFACT_NAME = "slurm-24.11-trixie-software.tar.gz"
SINFO = b"\x7fELF fake sinfo binary"
LIBSLURM = b"\x7fELF fake libslurm.so.42" + bytes(range(256)) * 8
AUTH_MUNGE = b"\x7fELF fake auth_munge plugin"
META = {
    "runtime-packages.tsv": "libmunge2\t0.5.16-1\n",
    "configure-options.txt": "--prefix=/x\n",
    "plugins.txt": "auth_munge.so\n",
    "compiler.txt": "gcc 14\n",
}
GENERATED = (
    "modules/slurm/24.11.5.lua",
    "etc/slurm.conf.example",
    "etc/cgroup.conf.example",
    "share/slurm-factory/systemd/slurmctld.service.in",
    "share/slurm-factory/systemd/slurmd.service.in",
    "share/slurm-factory/systemd/slurmdbd.service.in",
    "share/slurm-factory/systemd/slurmrestd.service.in",
    "sbin/slurm-factory-setup",
    "manifest.json",
)


# --- a fake installed tree, as `container.get_archive(install_prefix)` streams it -----------------------------------


def _member(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = 1_700_000_000
    # Docker reports the build user of the container, not root.
    info.uid = info.gid = 1000
    info.uname = info.gname = "builder"
    return info


def _add_dir(archive: tarfile.TarFile, name: str) -> None:
    archive.addfile(_member(name, tarfile.DIRTYPE, 0o755))


def _add_file(archive: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    archive.addfile(_member(name, mode=mode, size=len(data)), io.BytesIO(data))


def _tree_bytes(top: str = ROOT, extra: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        _add_dir(archive, f"{top}/")
        _add_dir(archive, f"{top}/bin")
        _add_file(archive, f"{top}/bin/sinfo", SINFO, 0o755)
        _add_dir(archive, f"{top}/sbin")
        _add_file(archive, f"{top}/sbin/slurmd", b"\x7fELF fake slurmd", 0o755)
        _add_dir(archive, f"{top}/lib")
        _add_file(archive, f"{top}/lib/libslurm.so.42", LIBSLURM, 0o755)
        symlink = _member(f"{top}/lib/libslurm.so", tarfile.SYMTYPE, 0o777)
        symlink.linkname = "libslurm.so.42"
        archive.addfile(symlink)
        hardlink = _member(f"{top}/lib/libslurmfull.so", tarfile.LNKTYPE, 0o755)
        hardlink.linkname = f"{top}/lib/libslurm.so.42"
        archive.addfile(hardlink)
        _add_dir(archive, f"{top}/lib/slurm")
        _add_file(archive, f"{top}/lib/slurm/auth_munge.so", AUTH_MUNGE, 0o755)
        if extra:
            _add_file(archive, f"{top}/lib/libbig.so", extra, 0o755)
    return buffer.getvalue()


@pytest.fixture
def plan(settings: Settings) -> BuildPlan:
    return make_plan(make_request(slurm_version="24.11.5", toolchain="trixie", engine="native"), settings)


@pytest.fixture
def tree_tar(tmp_path: Path) -> Path:
    path = tmp_path / "scratch" / "tree.tar"
    path.parent.mkdir()
    path.write_bytes(_tree_bytes())
    return path


@pytest.fixture
def manifest(plan: BuildPlan) -> dict[str, object]:
    return build_manifest(plan, META)


def _members(artifact: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(artifact, mode="r:gz") as archive:
        return {member.name: member for member in archive.getmembers()}


def _read(artifact: Path, name: str) -> bytes:
    with tarfile.open(artifact, mode="r:gz") as archive:
        extracted = archive.extractfile(name)
        assert extracted is not None, name
        return extracted.read()


def _unpack(artifact: Path, destination: Path) -> Path:
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(artifact, mode="r:gz") as archive:
        archive.extractall(destination, filter="tar")
    return destination / ROOT


# --- the tarball -----------------------------------------------------------------------------------------------------


def test_artifact_is_written_to_builds_with_the_spec_name(
    plan: BuildPlan, tree_tar: Path, manifest: dict[str, object], settings: Settings
) -> None:
    artifact = write_artifact(plan, tree_tar, manifest)

    assert artifact.path == settings.builds_dir / ARTIFACT_NAME
    assert artifact.path.is_file()
    assert artifact.size == artifact.path.stat().st_size
    assert artifact.path.stat().st_mode & 0o777 == 0o644
    with gzip.open(artifact.path) as compressed:
        assert compressed.read(1)  # a real gzip stream


def test_artifact_has_a_single_top_level_directory_naming_the_release(
    plan: BuildPlan, tree_tar: Path, manifest: dict[str, object]
) -> None:
    members = _members(write_artifact(plan, tree_tar, manifest).path)

    assert {name.split("/", 1)[0] for name in members} == {ROOT}
    assert members[ROOT].isdir()


def test_artifact_has_no_duplicate_members(plan: BuildPlan, tree_tar: Path, manifest: dict[str, object]) -> None:
    with tarfile.open(write_artifact(plan, tree_tar, manifest).path, mode="r:gz") as archive:
        names = archive.getnames()

    assert len(names) == len(set(names)), sorted(name for name in names if names.count(name) > 1)


def test_artifact_keeps_the_installed_files_with_their_modes_and_content(
    plan: BuildPlan, tree_tar: Path, manifest: dict[str, object]
) -> None:
    path = write_artifact(plan, tree_tar, manifest).path
    members = _members(path)

    assert members[f"{ROOT}/bin/sinfo"].isfile()
    assert members[f"{ROOT}/bin/sinfo"].mode == 0o755
    assert members[f"{ROOT}/lib/slurm/auth_munge.so"].mode == 0o755
    assert members[f"{ROOT}/lib/slurm"].isdir()
    assert _read(path, f"{ROOT}/bin/sinfo") == SINFO
    assert _read(path, f"{ROOT}/lib/libslurm.so.42") == LIBSLURM
    assert _read(path, f"{ROOT}/lib/slurm/auth_munge.so") == AUTH_MUNGE


def test_artifact_preserves_symlinks_and_hardlinks(
    plan: BuildPlan, tree_tar: Path, manifest: dict[str, object], tmp_path: Path
) -> None:
    path = write_artifact(plan, tree_tar, manifest).path
    members = _members(path)

    symlink = members[f"{ROOT}/lib/libslurm.so"]
    assert symlink.issym()
    assert symlink.linkname == "libslurm.so.42"
    hardlink = members[f"{ROOT}/lib/libslurmfull.so"]
    assert hardlink.islnk()
    assert hardlink.linkname == f"{ROOT}/lib/libslurm.so.42"

    root = _unpack(path, tmp_path / "unpacked")
    assert os.readlink(root / "lib" / "libslurm.so") == "libslurm.so.42"
    assert (root / "lib" / "libslurm.so").read_bytes() == LIBSLURM
    assert (root / "lib" / "libslurmfull.so").stat().st_ino == (root / "lib" / "libslurm.so.42").stat().st_ino


def test_artifact_reroots_a_tree_whose_top_directory_has_another_name(
    plan: BuildPlan, manifest: dict[str, object], tmp_path: Path
) -> None:
    tree = tmp_path / "other-top.tar"
    tree.write_bytes(_tree_bytes(top="install"))

    members = _members(write_artifact(plan, tree, manifest).path)

    assert {name.split("/", 1)[0] for name in members} == {ROOT}
    assert f"{ROOT}/bin/sinfo" in members
    assert members[f"{ROOT}/lib/libslurmfull.so"].linkname == f"{ROOT}/lib/libslurm.so.42"


def test_artifact_contains_the_generated_files(plan: BuildPlan, tree_tar: Path, manifest: dict[str, object]) -> None:
    path = write_artifact(plan, tree_tar, manifest).path
    members = _members(path)

    for relative in GENERATED:
        assert members[f"{ROOT}/{relative}"].isfile(), relative
    assert members[f"{ROOT}/sbin/slurm-factory-setup"].mode == 0o755
    assert members[f"{ROOT}/modules/slurm/24.11.5.lua"].mode == 0o644
    # Parent directories of generated files exist as directory members (tar tools and extractors rely on them).
    for directory in ("modules", "modules/slurm", "etc", "share", "share/slurm-factory", "share/slurm-factory/systemd"):
        assert members[f"{ROOT}/{directory}"].isdir(), directory
    for relative, plan_file in plan.artifact_files.items():
        assert _read(path, f"{ROOT}/{relative}").decode() == plan_file.content


def test_every_member_is_owned_by_root(plan: BuildPlan, tree_tar: Path, manifest: dict[str, object]) -> None:
    members = _members(write_artifact(plan, tree_tar, manifest).path)

    owners = {(m.uid, m.gid, m.uname, m.gname) for m in members.values()}
    assert owners == {(0, 0, "root", "root")}


def test_embedded_manifest_is_the_given_manifest(plan: BuildPlan, tree_tar: Path, manifest: dict[str, object]) -> None:
    artifact = write_artifact(plan, tree_tar, manifest)

    assert json.loads(_read(artifact.path, f"{ROOT}/manifest.json")) == manifest
    assert artifact.manifest == manifest


def test_sha256_sidecar_names_the_tarball_and_matches_its_digest(
    plan: BuildPlan, tree_tar: Path, manifest: dict[str, object]
) -> None:
    artifact = write_artifact(plan, tree_tar, manifest)

    digest = hashlib.sha256(artifact.path.read_bytes()).hexdigest()
    assert artifact.sha256 == digest
    assert artifact.checksum_path == artifact.path.with_name(f"{ARTIFACT_NAME}.sha256")
    assert artifact.checksum_path.read_text(encoding="utf-8") == f"{digest}  {ARTIFACT_NAME}\n"


def test_sha256_sidecar_is_accepted_by_sha256sum(plan: BuildPlan, tree_tar: Path, manifest: dict[str, object]) -> None:
    artifact = write_artifact(plan, tree_tar, manifest)

    check = subprocess.run(
        ["sha256sum", "--check", "--strict", artifact.checksum_path.name],
        cwd=artifact.path.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_manifest_sidecar_equals_the_embedded_manifest(
    plan: BuildPlan, tree_tar: Path, manifest: dict[str, object]
) -> None:
    artifact = write_artifact(plan, tree_tar, manifest)

    assert artifact.manifest_path == artifact.path.with_name(f"{ARTIFACT_NAME}.manifest.json")
    assert artifact.manifest_path.read_bytes() == _read(artifact.path, f"{ROOT}/manifest.json")


def test_builds_holds_only_the_tarball_and_its_sidecars(
    plan: BuildPlan, tree_tar: Path, manifest: dict[str, object], settings: Settings
) -> None:
    write_artifact(plan, tree_tar, manifest)

    assert sorted(p.name for p in settings.builds_dir.iterdir()) == [
        ARTIFACT_NAME,
        f"{ARTIFACT_NAME}.manifest.json",
        f"{ARTIFACT_NAME}.sha256",
    ]


def test_writing_twice_replaces_the_artifact(
    plan: BuildPlan, tree_tar: Path, manifest: dict[str, object], settings: Settings, tmp_path: Path
) -> None:
    write_artifact(plan, tree_tar, manifest)
    bigger = tmp_path / "bigger.tar"
    bigger.write_bytes(_tree_bytes(extra=os.urandom(4096)))

    artifact = write_artifact(plan, bigger, manifest)

    assert f"{ROOT}/lib/libbig.so" in _members(artifact.path)
    assert artifact.checksum_path.read_text(encoding="utf-8").split()[0] == artifact.sha256
    assert len(list(settings.builds_dir.iterdir())) == 3


# --- failures leave nothing half-written ---------------------------------------------------------------------------


def _truncated_tree(tmp_path: Path) -> Path:
    """A tree whose stream breaks in the middle of a large file's data."""
    data = _tree_bytes(extra=os.urandom(256 * 1024))
    path = tmp_path / "truncated.tar"
    path.write_bytes(data[: len(data) // 2])
    return path


def _garbage_tree(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.tar"
    path.write_bytes(b"this is not a tar stream\n" * 100)
    return path


@pytest.mark.parametrize("broken_tree", [_truncated_tree, _garbage_tree], ids=["truncated", "garbage"])
def test_failed_write_leaves_no_final_file_and_no_temporary_files(
    plan: BuildPlan,
    manifest: dict[str, object],
    settings: Settings,
    tmp_path: Path,
    broken_tree: Callable[[Path], Path],
) -> None:
    tree = broken_tree(tmp_path)

    with pytest.raises(tarfile.ReadError):
        write_artifact(plan, tree, manifest)

    assert not plan.artifact_path.exists()
    assert not plan.artifact_path.with_name(f"{ARTIFACT_NAME}.sha256").exists()
    assert not plan.artifact_path.with_name(f"{ARTIFACT_NAME}.manifest.json").exists()
    assert list(settings.builds_dir.iterdir()) == []


def test_failed_write_keeps_the_previous_artifact_intact(
    plan: BuildPlan, tree_tar: Path, manifest: dict[str, object], settings: Settings, tmp_path: Path
) -> None:
    previous = write_artifact(plan, tree_tar, manifest)
    before = {p.name: p.read_bytes() for p in settings.builds_dir.iterdir()}

    with pytest.raises(tarfile.ReadError):
        write_artifact(plan, _truncated_tree(tmp_path), manifest)

    assert {p.name: p.read_bytes() for p in settings.builds_dir.iterdir()} == before
    assert hashlib.sha256(previous.path.read_bytes()).hexdigest() == previous.sha256


# --- manifest ------------------------------------------------------------------------------------------------------


def test_manifest_records_dependencies_plugins_engine_and_the_release_checksum(plan: BuildPlan) -> None:
    manifest = build_manifest(plan, META)

    release = resolve_release("24.11.5")
    assert manifest["dependencies"] == [{"name": "libmunge2", "version": "0.5.16-1"}]
    assert manifest["plugins"] == ["auth_munge.so"]
    assert manifest["configure_options"] == ["--prefix=/x"]
    assert manifest["engine"] == "native"
    assert manifest["slurm"]["version"] == "24.11.5"
    assert manifest["slurm"]["series"] == "24.11"
    assert manifest["slurm"]["sha256"] == release.sha256
    assert manifest["slurm"]["url"] == release.url
    assert manifest["toolchain"]["name"] == "trixie"
    assert manifest["toolchain"]["base_image"] == "debian:trixie"
    assert manifest["toolchain"]["compiler"] == "gcc 14"
    assert manifest["artifact"] == ARTIFACT_NAME
    assert manifest["root"] == ROOT
    assert manifest["build_id"] == plan.build_id
    assert manifest["build_prefix"] == f"/opt/slurm-factory-build/{ROOT}"
    assert "built_at" not in manifest
    assert manifest["source_date_epoch"] == int(dt.datetime(2025, 5, 7, tzinfo=dt.UTC).timestamp())
    assert manifest["tool"] == {"name": "slurm-factory", "version": __version__}
    assert "libmunge2" in manifest["runtime_packages"]
    assert set(plan.request.toolchain.native.runtime_packages) <= set(manifest["runtime_packages"])
    assert manifest["runtime_packages"] == sorted(manifest["runtime_packages"])
    json.dumps(manifest)  # serializable as is


def test_manifest_of_empty_metadata_has_empty_lists(plan: BuildPlan) -> None:
    manifest = build_manifest(plan, {})

    assert manifest["dependencies"] == []
    assert manifest["plugins"] == []
    assert manifest["configure_options"] == []
    assert manifest["toolchain"]["compiler"] == ""


def test_manifest_reads_every_runtime_package_line_and_skips_blank_lines(plan: BuildPlan) -> None:
    tsv = "libmunge2\t0.5.16-1\n\nliblz4-1\t1.10.0-4\n  \nlibjson-c5\t0.18+ds-1\n"

    manifest = build_manifest(plan, {"runtime-packages.tsv": tsv})

    assert manifest["dependencies"] == [
        {"name": "libmunge2", "version": "0.5.16-1"},
        {"name": "liblz4-1", "version": "1.10.0-4"},
        {"name": "libjson-c5", "version": "0.18+ds-1"},
    ]


# --- the generated files, for real -----------------------------------------------------------------------------------


@pytest.fixture
def unpacked(plan: BuildPlan, tree_tar: Path, manifest: dict[str, object], tmp_path: Path) -> Path:
    """The artifact unpacked somewhere else than its build prefix, as a site would."""
    artifact = write_artifact(plan, tree_tar, manifest)
    return _unpack(artifact.path, tmp_path / "site" / "opt").resolve()


def _run_setup(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(root / "sbin" / "slurm-factory-setup"), *args],
        cwd="/",
        capture_output=True,
        text=True,
        check=False,
    )


def test_setup_script_renders_slurm_conf_for_the_unpacked_root(unpacked: Path) -> None:
    setup = _run_setup(unpacked)

    assert setup.returncode == 0, setup.stderr
    slurm_conf = (unpacked / "etc" / "slurm.conf").read_text(encoding="utf-8")
    # No PluginDir: the relocated tree finds lib/slurm itself (relocatable-plugin-dir.patch).
    assert "\nPluginDir=" not in slurm_conf
    assert f"AuthAltParameters=jwt_key={unpacked}/etc/jwt_hs256.key\n" in slurm_conf
    assert "@SLURM" not in slurm_conf
    assert (unpacked / "etc" / "cgroup.conf").is_file()
    slurmdbd_conf = unpacked / "etc" / "slurmdbd.conf"
    assert slurmdbd_conf.stat().st_mode & 0o777 == 0o600, "slurmdbd refuses a slurmdbd.conf others can read"
    assert f"AuthAltParameters=jwt_key={unpacked}/etc/jwt_hs256.key\n" in slurmdbd_conf.read_text(encoding="utf-8")


def test_setup_script_renders_systemd_units_for_the_unpacked_root(unpacked: Path) -> None:
    setup = _run_setup(unpacked)

    assert setup.returncode == 0, setup.stderr
    slurmd = (unpacked / "etc" / "systemd" / "slurmd.service").read_text(encoding="utf-8")
    assert f"ExecStart={unpacked}/sbin/slurmd --systemd -d {unpacked}/sbin/slurmstepd $SLURMD_OPTIONS\n" in slurmd
    assert f"Environment=SLURM_CONF={unpacked}/etc/slurm.conf\n" in slurmd
    assert "EnvironmentFile=-/etc/default/slurmd\n" in slurmd
    for unit in ("slurmctld", "slurmd", "slurmdbd", "slurmrestd", "sackd"):
        rendered = (unpacked / "etc" / "systemd" / f"{unit}.service").read_text(encoding="utf-8")
        assert "@SLURM_ROOT@" not in rendered, unit
        assert "@SLURM_CONF@" not in rendered, unit
    assert not list((unpacked / "etc").rglob("*.tmp"))


def test_setup_script_keeps_an_existing_slurm_conf(unpacked: Path) -> None:
    assert _run_setup(unpacked).returncode == 0
    slurm_conf = unpacked / "etc" / "slurm.conf"
    slurm_conf.write_text("ClusterName=site-edited\n", encoding="utf-8")

    second = _run_setup(unpacked)

    assert second.returncode == 0, second.stderr
    assert slurm_conf.read_text(encoding="utf-8") == "ClusterName=site-edited\n"
    assert f"kept existing {slurm_conf}" in second.stdout


def test_setup_script_writes_to_the_directories_it_is_given(unpacked: Path, tmp_path: Path) -> None:
    conf_dir = tmp_path / "etc-slurm"
    unit_dir = tmp_path / "units"

    setup = _run_setup(unpacked, "--conf-dir", str(conf_dir), "--unit-dir", str(unit_dir))

    assert setup.returncode == 0, setup.stderr
    slurm_conf = (conf_dir / "slurm.conf").read_text(encoding="utf-8")
    assert f"AuthAltParameters=jwt_key={conf_dir}/jwt_hs256.key\n" in slurm_conf
    slurmd = (unit_dir / "slurmd.service").read_text(encoding="utf-8")
    assert f"Environment=SLURM_CONF={conf_dir}/slurm.conf\n" in slurmd
    assert not (unpacked / "etc" / "slurm.conf").exists()


def test_setup_script_configless_writes_units_and_no_configuration(unpacked: Path, tmp_path: Path) -> None:
    setup = _run_setup(unpacked, "--configless", "--unit-dir", str(tmp_path / "units"))

    assert setup.returncode == 0, setup.stderr
    assert not list((unpacked / "etc").glob("*.conf")), "a configless node has no configuration on disk"
    assert (tmp_path / "units" / "sackd.service").is_file()
    assert "configless: no configuration written" in setup.stdout


def test_setup_script_refuses_a_jwt_key_on_a_configless_node(unpacked: Path) -> None:
    setup = _run_setup(unpacked, "--configless", "--jwt-key")

    assert setup.returncode == 2
    assert "a configless node has no key" in setup.stderr


def test_setup_script_makes_a_jwt_key_once_and_keeps_it(unpacked: Path) -> None:
    first = _run_setup(unpacked, "--jwt-key")
    key = unpacked / "etc" / "jwt_hs256.key"
    content = key.read_bytes()
    second = _run_setup(unpacked, "--jwt-key")

    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert len(content) == 32
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.read_bytes() == content
    assert f"kept existing {key}" in second.stdout


def test_setup_script_links_the_pam_modules_into_the_pam_directory(unpacked: Path, tmp_path: Path) -> None:
    (unpacked / "lib" / "security").mkdir(parents=True, exist_ok=True)
    (unpacked / "lib" / "security" / "pam_slurm_adopt.so").write_bytes(b"module")
    pam_dir = tmp_path / "pam"
    pam_dir.mkdir()

    setup = _run_setup(unpacked, "--pam-dir", str(pam_dir))

    assert setup.returncode == 0, setup.stderr
    link = pam_dir / "pam_slurm_adopt.so"
    assert link.is_symlink() and link.resolve() == (unpacked / "lib" / "security" / "pam_slurm_adopt.so")
    assert not (pam_dir / "pam_slurm.so").exists(), "only modules the tree has are linked"


def test_setup_script_users_and_dirs_need_root(unpacked: Path) -> None:
    if os.getuid() == 0:
        pytest.skip("runs as root here: --users would create system users on this host")
    setup = _run_setup(unpacked, "--users")

    assert setup.returncode == 2
    assert "--users needs root" in setup.stderr


def test_setup_script_help_lists_every_option(unpacked: Path) -> None:
    setup = _run_setup(unpacked, "--help")
    script = (unpacked / "sbin" / "slurm-factory-setup").read_text(encoding="utf-8")
    handled = set(re.findall(r"^\s+(--[a-z-]+)\)", script, flags=re.MULTILINE))

    assert setup.returncode == 0
    assert handled, "no options parsed"
    assert {option for option in handled if option in setup.stdout} == handled


def test_setup_script_rejects_an_unknown_option(unpacked: Path) -> None:
    setup = _run_setup(unpacked, "--bogus")

    assert setup.returncode == 2
    assert "unknown option --bogus" in setup.stderr


def test_setup_script_handles_an_ampersand_in_the_unpack_path(
    plan: BuildPlan, tree_tar: Path, manifest: dict[str, object], tmp_path: Path
) -> None:
    artifact = write_artifact(plan, tree_tar, manifest)
    root = _unpack(artifact.path, tmp_path / "R&D" / "opt").resolve()

    setup = _run_setup(root)

    assert setup.returncode == 0, setup.stderr
    assert f"jwt_key={root}/etc/jwt_hs256.key\n" in (root / "etc" / "slurm.conf").read_text(encoding="utf-8")
    slurmd = (root / "etc" / "systemd" / "slurmd.service").read_text(encoding="utf-8")
    assert f"ExecStart={root}/sbin/slurmd --systemd" in slurmd


def test_modulefile_derives_the_root_from_its_own_location(unpacked: Path) -> None:
    modulefile = unpacked / "modules" / "slurm" / "24.11.5.lua"
    text = modulefile.read_text(encoding="utf-8")

    match = re.search(r'local root = myFileName\(\):gsub\("([^"]+)", ""\)', text)
    assert match, "the modulefile must compute its root from myFileName()"
    # The Lua pattern uses no Lua-specific escapes, so it reads the same as a Python regular expression.
    lua_pattern = match.group(1)
    assert "%" not in lua_pattern
    assert re.sub(lua_pattern, "", str(modulefile)) == str(unpacked)
    assert not re.search(r"/opt/slurm-factory-build|" + re.escape(str(unpacked)), text)


def test_modulefile_sets_paths_and_slurm_root_and_does_not_force_slurm_conf(unpacked: Path) -> None:
    text = (unpacked / "modules" / "slurm" / "24.11.5.lua").read_text(encoding="utf-8")

    assert 'setenv("SLURM_ROOT", root)' in text
    assert 'prepend_path("PATH", pathJoin(root, "bin"))' in text
    assert 'prepend_path("PATH", pathJoin(root, "sbin"))' in text
    assert 'prepend_path("MANPATH", pathJoin(root, "share/man"))' in text
    assert "LD_LIBRARY_PATH" not in text
    # SLURM_CONF only where a site slurm.conf exists (configless otherwise), a value set before loading kept, and
    # pushenv so that unloading restores what was there.
    guarded = re.search(
        r'if isFile\(site_conf\) then\s+pushenv\("SLURM_CONF", os\.getenv\("SLURM_CONF"\) or site_conf\)\s+end',
        text,
    )
    assert guarded, text
    assert 'setenv("SLURM_CONF"' not in text


def test_spack_manifest_records_the_compiler_spack_used(tmp_path: Path) -> None:
    settings = Settings(project_name="manifest", home=tmp_path)
    os_gcc = make_plan(make_request(slurm_version="24.11.5", toolchain="rockylinux8"), settings)
    own_gcc = make_plan(
        make_request(
            slurm_version="24.11.5", toolchain="rockylinux8", compiler_version="13.4.0", use_local_buildcache=True
        ),
        settings,
    )
    native = make_plan(make_request(slurm_version="24.11.5", toolchain="trixie", engine="native"), settings)
    assert build_manifest(os_gcc, {})["spack_compiler"] == "gcc@8.5.0"
    assert build_manifest(own_gcc, {})["spack_compiler"] == "gcc@13.4.0"
    assert build_manifest(native, {})["spack_compiler"] is None


# --- reproducible bytes ----------------------------------------------------------------------------------------------


def _rewritten_tree(path: Path, mtime: int, owner: int, *, reverse: bool) -> Path:
    """The same installed files as `_tree_bytes()`, streamed in another order, at another time, by another user,
    with PAX atime/ctime — what a second build on another day produces."""
    with tarfile.open(fileobj=io.BytesIO(_tree_bytes()), mode="r:") as source:
        members = [(member, source.extractfile(member).read() if member.isfile() else None)  # type: ignore[union-attr]
                   for member in source.getmembers()]  # fmt: skip
    if reverse:  # hard links stay after their targets, as any tar stream has them
        members = sorted(members, key=lambda item: (item[0].islnk(), item[0].name), reverse=True)
        members = [m for m in members if not m[0].islnk()] + [m for m in members if m[0].islnk()]
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode="w", format=tarfile.PAX_FORMAT) as out:
        for member, data in members:
            member.mtime, member.uid, member.gid = mtime, owner, owner
            member.pax_headers = {"atime": f"{mtime + 7}.5", "ctime": f"{mtime + 9}.25"}
            out.addfile(member, io.BytesIO(data) if data is not None else None)
    return path


def test_the_same_tree_built_at_another_time_by_another_user_gives_identical_bytes(
    plan: BuildPlan, manifest: dict[str, object], settings: Settings, tmp_path: Path
) -> None:
    first = write_artifact(
        plan, _rewritten_tree(tmp_path / "a" / "tree.tar", 1_700_000_000, 1000, reverse=False), manifest
    )
    first_bytes = first.path.read_bytes()

    second = write_artifact(
        plan, _rewritten_tree(tmp_path / "b" / "tree.tar", 1_800_000_123, 0, reverse=True), manifest
    )

    assert second.sha256 == first.sha256
    assert second.path.read_bytes() == first_bytes


def test_tarball_members_are_sorted_with_the_release_date_and_normalized_modes(
    plan: BuildPlan, tree_tar: Path, manifest: dict[str, object]
) -> None:
    path = write_artifact(plan, tree_tar, manifest).path
    with tarfile.open(path, mode="r:gz") as archive:
        members = archive.getmembers()

    plain = [member.name for member in members if not member.islnk()]
    assert plain == sorted(plain)
    assert {member.mtime for member in members} == {plan.request.slurm.source_date_epoch}
    assert all(not member.pax_headers for member in members)
    modes = {member.name: member.mode for member in members}
    assert modes[f"{ROOT}/bin/sinfo"] == 0o755
    assert modes[f"{ROOT}/etc/slurm.conf.example"] == 0o644
    assert modes[f"{ROOT}/lib"] == 0o755


def test_gzip_header_has_no_file_name_and_no_time(plan: BuildPlan, tree_tar: Path, manifest: dict[str, object]) -> None:
    header = write_artifact(plan, tree_tar, manifest).path.read_bytes()[:10]

    flags, mtime = header[3], int.from_bytes(header[4:8], "little")
    assert flags & 0x08 == 0, "FNAME set"
    assert mtime == 0


# --- the -debug companion ------------------------------------------------------------------------------------------

DEBUG_FILE = f"{ROOT}/lib/debug/.build-id/ab/cdef0123.debug"


def _tree_with_debug(tmp_path: Path) -> Path:
    buffer = io.BytesIO(_tree_bytes())
    with tarfile.open(fileobj=buffer, mode="a") as archive:
        _add_dir(archive, f"{ROOT}/lib/debug")
        _add_dir(archive, f"{ROOT}/lib/debug/.build-id")
        _add_dir(archive, f"{ROOT}/lib/debug/.build-id/ab")
        _add_file(archive, DEBUG_FILE, b"\x7fELF debug sections of slurmd", 0o644)
    path = tmp_path / "scratch-debug" / "tree.tar"
    path.parent.mkdir()
    path.write_bytes(buffer.getvalue())
    return path


def test_debug_symbols_go_into_the_companion_which_the_manifest_names_by_sha256(
    plan: BuildPlan, manifest: dict[str, object], tmp_path: Path
) -> None:
    artifact = write_artifact(plan, _tree_with_debug(tmp_path), manifest)
    companion = debug_companion(artifact.path)

    assert companion.name == "slurm-24.11-trixie-debug.tar.gz"
    assert not [name for name in _members(artifact.path) if "/lib/debug" in name]
    assert set(_members(companion)) == {
        ROOT, f"{ROOT}/lib", f"{ROOT}/lib/debug", f"{ROOT}/lib/debug/.build-id", f"{ROOT}/lib/debug/.build-id/ab",
        DEBUG_FILE,
    }  # fmt: skip
    recorded = json.loads(_read(artifact.path, f"{ROOT}/manifest.json"))["debug_symbols"]
    assert recorded == {
        "artifact": companion.name,
        "sha256": hashlib.sha256(companion.read_bytes()).hexdigest(),
        "size": companion.stat().st_size,
        "files": 1,
    }
    assert sidecar(companion, ".sha256").read_text().split() == [recorded["sha256"], companion.name]


def test_the_companion_is_reproducible(plan: BuildPlan, manifest: dict[str, object], tmp_path: Path) -> None:
    first = debug_companion(write_artifact(plan, _tree_with_debug(tmp_path), manifest).path).read_bytes()
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    tree = _tree_with_debug(second_dir)
    second = debug_companion(write_artifact(plan, tree, manifest, destination=second_dir / "out" / ARTIFACT_NAME).path)

    assert second.read_bytes() == first


def test_a_tree_without_debug_symbols_has_no_companion(
    plan: BuildPlan, tree_tar: Path, manifest: dict[str, object]
) -> None:
    artifact = write_artifact(plan, tree_tar, manifest)
    assert not debug_companion(artifact.path).exists()
    assert json.loads(_read(artifact.path, f"{ROOT}/manifest.json"))["debug_symbols"] is None


def test_the_store_links_the_companion_under_its_contract_name(
    plan: BuildPlan, manifest: dict[str, object], settings: Settings, tmp_path: Path
) -> None:
    stored = settings.builds_dir / "by-id" / plan.build_id / ARTIFACT_NAME
    artifact = write_artifact(plan, _tree_with_debug(tmp_path), manifest, destination=stored)

    link_contract_names(settings.builds_dir, artifact.path)

    link = settings.builds_dir / "slurm-24.11-trixie-debug.tar.gz"
    assert link.is_symlink() and link.resolve() == debug_companion(stored).resolve()
    assert (settings.builds_dir / "slurm-24.11-trixie-debug.tar.gz.sha256").is_symlink()


def test_the_manifest_records_the_release_flags_patches_and_contribs(plan: BuildPlan) -> None:
    manifest = build_manifest(plan, {**META, "contribs.txt": "pmi\npmi2\nseff\n"})

    assert "--disable-debug" in manifest["build_flags"]["configure"]
    assert "-fstack-protector-strong" in manifest["build_flags"]["CFLAGS"]
    assert "-Wl,-z,relro" in manifest["build_flags"]["LDFLAGS"]
    assert not any("-z,now" in flag for flag in manifest["build_flags"]["LDFLAGS"])
    assert [patch["origin"] for patch in manifest["patches"]] == ["slurm-factory"] * len(own_patches())
    assert all(set(patch) == {"name", "origin", "sha256"} for patch in manifest["patches"]), "no host path"
    assert manifest["contribs"] == ["pmi", "pmi2", "seff"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--conf-dir", "--configless"), "--conf-dir needs a value, not the option --configless"),
        (("--unit-dir", "/srv/my units"), "a path with white space, % or \\ cannot be written into a systemd unit"),
        (("--conf-dir", "/srv/100%"), "a path with white space, % or \\ cannot be written into a systemd unit"),
        (("--configless", "--jwt-key"), "a configless node has no key"),
        (("--pam-dir", "/nonexistent/security"), "--pam-dir /nonexistent/security: no such directory"),
        (("--slurm-uid", "4o1"), "--slurm-uid needs a number, not '4o1'"),
    ],
)
def test_setup_script_refuses_before_it_writes_anything(unpacked: Path, args: tuple[str, ...], message: str) -> None:
    before = sorted(path.relative_to(unpacked) for path in unpacked.rglob("*"))

    setup = _run_setup(unpacked, *args)

    assert setup.returncode == 2
    assert message in setup.stderr
    assert sorted(path.relative_to(unpacked) for path in unpacked.rglob("*")) == before


def test_setup_script_says_the_jwt_key_the_configuration_names_is_missing(unpacked: Path) -> None:
    without_key = _run_setup(unpacked)
    with_key = _run_setup(unpacked, "--jwt-key")

    assert f"{unpacked}/etc/jwt_hs256.key, which does not exist yet" in without_key.stdout
    assert "does not exist yet" not in with_key.stdout


def test_setup_script_refuses_an_unpack_path_a_unit_cannot_hold(
    plan: BuildPlan, tree_tar: Path, manifest: dict[str, object], tmp_path: Path
) -> None:
    artifact = write_artifact(plan, tree_tar, manifest)
    root = _unpack(artifact.path, tmp_path / "my site" / "opt").resolve()

    setup = _run_setup(root)

    assert setup.returncode == 2
    assert "the tree's root" in setup.stderr
    assert not (root / "etc" / "slurm.conf").exists()


def test_setup_script_checks_a_directory_again_after_following_its_link(unpacked: Path, tmp_path: Path) -> None:
    target = tmp_path / "site config"
    target.mkdir()
    link = tmp_path / "etc-slurm"
    link.symlink_to(target)

    setup = _run_setup(unpacked, "--conf-dir", str(link))

    assert setup.returncode == 2
    assert "--conf-dir (resolved)" in setup.stderr
    assert list(target.iterdir()) == [], "nothing written through the link"
