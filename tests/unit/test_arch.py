"""`--arch`: the catalog decides which toolchain and engine build which arch; a cross build from amd64 to arm64 on
Debian renders the OS's cross toolchain and the arm64 -dev packages; everything else is refused up front (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from slurm_factory.choices import Arch, host_arch
from slurm_factory.config import Settings
from slurm_factory.emulation import emulation_problem, require_emulation
from slurm_factory.exceptions import EXIT_USAGE, ConfigurationError
from slurm_factory.plan import make_plan
from slurm_factory.plan.native import configure_options, image_packages
from slurm_factory.request import BuildRequest, make_request
from slurm_factory.verify import verify_artifact
from tests.unit.tarballs import ROOT, Member, manifest, write_artifact


@pytest.fixture(autouse=True)
def _amd64_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests describe an x86_64 build host, whatever machine runs them."""
    monkeypatch.setattr("slurm_factory.request.host_arch", lambda: Arch.AMD64)


def _cross(**options: object) -> BuildRequest:
    return make_request(
        **{"slurm_version": "24.11.5", "toolchain": "trixie", "engine": "native", "arch": "arm64", **options}
    )


def test_host_arch_maps_uname_machines() -> None:
    assert host_arch("x86_64") is Arch.AMD64
    assert host_arch("aarch64") is Arch.ARM64
    assert host_arch("riscv64") is None


def test_default_arch_is_the_hosts_and_keeps_the_contract_name() -> None:
    request = make_request(slurm_version="24.11.5", toolchain="trixie", engine="native")
    assert request.arch is Arch.AMD64 and not request.cross
    assert request.artifact_filename == "slurm-24.11-trixie-software.tar.gz"


@pytest.mark.parametrize("toolchain", ["trixie", "bookworm"])
def test_arm64_on_debian_native_is_a_cross_build_named_arm64(toolchain: str) -> None:
    request = _cross(toolchain=toolchain)
    assert request.cross
    assert request.artifact_filename == f"slurm-24.11-{toolchain}-arm64-software.tar.gz"
    assert request.artifact_root == f"slurm-24.11.5-{toolchain}-arm64"


def test_cross_image_installs_the_cross_compiler_and_arm64_dev_packages() -> None:
    packages = image_packages(_cross())
    assert "crossbuild-essential-arm64" in packages
    assert "libmunge-dev:arm64" in packages and "libpmix-dev:arm64" in packages
    assert "libmunge-dev" not in packages
    assert "build-essential" in packages  # the build host's own tools stay native


def test_cross_configure_names_host_build_and_the_arm64_pmix() -> None:
    options = configure_options(_cross())
    assert "--host=aarch64-linux-gnu" in options
    assert "--build=x86_64-linux-gnu" in options
    assert "--with-pmix=/usr/lib/aarch64-linux-gnu/pmix2" in options


def test_native_configure_keeps_the_x86_64_pmix() -> None:
    request = make_request(slurm_version="24.11.5", toolchain="trixie", engine="native")
    assert "--with-pmix=/usr/lib/x86_64-linux-gnu/pmix2" in configure_options(request)
    assert not any(option.startswith("--host=") for option in configure_options(request))


def test_cross_plan_renders_multiarch_dockerfile_and_cross_compiler(tmp_path: Path) -> None:
    plan = make_plan(_cross(), Settings(project_name="t", home=tmp_path))
    assert "RUN dpkg --add-architecture arm64" in plan.image.dockerfile
    assert plan.image.repository == "t/toolchain-trixie-cross-arm64-native"
    script = next(iter(plan.container.files.values())).content
    assert 'export CC="ccache aarch64-linux-gnu-gcc"' in script
    assert "PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig" in script
    assert "/lib/ld-linux-aarch64.so.1 --list" in script
    assert plan.artifact_path.name == "slurm-24.11-trixie-arm64-software.tar.gz"


def test_arm64_and_amd64_builds_have_different_ids(tmp_path: Path) -> None:
    settings = Settings(project_name="t", home=tmp_path)
    amd64 = make_request(slurm_version="24.11.5", toolchain="trixie", engine="native")
    assert make_plan(_cross(), settings).build_id != make_plan(amd64, settings).build_id


def _refusal(**options: object) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as caught:
        _cross(**options)
    assert caught.value.exit_code == EXIT_USAGE
    return caught.value


def test_arm64_on_a_toolchain_without_an_arm64_image_is_refused_naming_what_builds_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from slurm_factory.catalog.toolchains import load_toolchains

    trixie = load_toolchains()["trixie"]
    amd64_only = trixie.model_copy(update={"arches": {"amd64": trixie.arches["amd64"]}})
    monkeypatch.setattr("slurm_factory.request.get_toolchain", lambda name: amd64_only)
    error = _refusal(engine="spack")
    assert "--arch arm64 is not supported on trixie; supported: " in str(error)
    assert "bookworm (--engine spack, native)" in str(error)


EMULATED_ONLY = {
    "rockylinux10": "arm64v8/rockylinux:10",
    "rockylinux9": "arm64v8/rockylinux:9",
    "rockylinux8": "arm64v8/rockylinux:8",
}


@pytest.mark.parametrize(("toolchain", "image"), EMULATED_ONLY.items())
def test_arm64_without_a_cross_toolchain_builds_in_the_arm64_image_under_emulation(
    toolchain: str, image: str, tmp_path: Path
) -> None:
    request = _cross(toolchain=toolchain)
    assert request.emulated and request.foreign and not request.cross
    assert request.base_image == image
    assert request.artifact_filename == f"slurm-24.11-{toolchain}-arm64-software.tar.gz"
    plan = make_plan(request, Settings(project_name="t", home=tmp_path))
    assert plan.image.dockerfile.startswith(f"FROM {image}") or f"\nFROM {image}" in plan.image.dockerfile
    assert "--add-architecture" not in plan.image.dockerfile
    assert plan.image.repository == f"t/toolchain-{toolchain}-arm64-native"
    assert not any(package.endswith(":arm64") for package in image_packages(request))
    assert not any(option.startswith(("--host=", "--build=")) for option in configure_options(request))


@pytest.mark.parametrize("toolchain", ["resolute", "noble", "jammy"])
def test_arm64_on_ubuntu_cross_compiles_with_the_ports_sources_of_its_arm64_image(
    toolchain: str, tmp_path: Path
) -> None:
    """Ubuntu's arm64 packages are in another archive (ports): the image copies the apt sources of the arm64 image
    (no mirror is named here) and keeps each archive to its arch."""
    request = _cross(toolchain=toolchain)
    assert request.cross and not request.emulated and request.base_image == f"ubuntu:{toolchain}"
    assert "libpmix-dev:arm64" in image_packages(request)
    assert "--host=aarch64-linux-gnu" in configure_options(request)
    plan = make_plan(request, Settings(project_name="t", home=tmp_path))
    dockerfile = plan.image.dockerfile
    stages = [line for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert stages == [f"FROM arm64v8/ubuntu:{toolchain} AS foreign-apt-sources", f"FROM ubuntu:{toolchain}"]
    assert "COPY --from=foreign-apt-sources /etc/apt/ /tmp/foreign-apt/etc-apt/" in dockerfile
    run = "RUN sh /tmp/foreign-apt/keep-apt-sources-to-arch.sh arm64 /tmp/foreign-apt"
    assert dockerfile.index(run) < dockerfile.index("RUN apt-get update")
    assert "ports.ubuntu.com" not in dockerfile
    script = plan.image.context_files["keep-apt-sources-to-arch.sh"]
    assert script.content.startswith("#!/bin/sh") and "keep-apt-sources-to-arch.sh" in plan.context_files()
    emulated = make_plan(_cross(toolchain=toolchain, emulate=True), Settings(project_name="t", home=tmp_path))
    assert "foreign-apt-sources" not in emulated.image.dockerfile


def test_debian_cross_builds_read_every_arch_from_the_image_own_archive(tmp_path: Path) -> None:
    image = make_plan(_cross(), Settings(project_name="t", home=tmp_path)).image
    assert "foreign-apt-sources" not in image.dockerfile and image.dockerfile.count("FROM ") == 1
    assert image.context_files == {}


def test_emulate_on_debian_builds_in_the_arm64_image_instead_of_cross_compiling(tmp_path: Path) -> None:
    settings = Settings(project_name="t", home=tmp_path)
    emulated = _cross(emulate=True)
    assert emulated.emulated and not emulated.cross and emulated.base_image == "arm64v8/debian:trixie"
    plan = make_plan(emulated, settings)
    assert "FROM arm64v8/debian:trixie" in plan.image.dockerfile
    assert "crossbuild-essential-arm64" not in plan.image.dockerfile
    assert plan.image.repository == "t/toolchain-trixie-arm64-native"
    options = configure_options(emulated)
    assert "--with-pmix=/usr/lib/aarch64-linux-gnu/pmix2" in options  # the arm64 image's own libraries
    assert not any(option.startswith("--host=") for option in options)
    script = next(iter(plan.container.files.values())).content
    assert "aarch64-linux-gnu-gcc" not in script
    # Same artifact name as the cross build, another identity.
    assert plan.artifact_path.name == make_plan(_cross(), settings).artifact_path.name
    assert plan.build_id != make_plan(_cross(), settings).build_id


def test_emulate_without_a_foreign_arch_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="--emulate builds for another machine than this amd64 host"):
        make_request(slurm_version="24.11.5", toolchain="trixie", engine="native", emulate=True)
    with pytest.raises(ConfigurationError, match="--emulate builds for another machine"):
        make_request(slurm_version="24.11.5", toolchain="trixie", engine="native", arch="amd64", emulate=True)


def test_arm64_cross_with_gpu_is_refused() -> None:
    assert "--gpu with --arch arm64" in str(_refusal(gpu=True))


@pytest.mark.parametrize("options", [{}, {"emulate": True}, {"engine": "spack"}], ids=["cross", "emulated", "spack"])
def test_arm64_with_verify_is_accepted_the_checks_run_under_emulation(options: dict[str, object]) -> None:
    assert _cross(verify=True, **options).verify


def test_unknown_arch_lists_the_valid_ones() -> None:
    assert "valid values: amd64, arm64" in str(_refusal(arch="riscv64"))


def test_amd64_from_an_arm64_host_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("slurm_factory.request.host_arch", lambda: Arch.ARM64)
    assert "--arch amd64 from an arm64 host is not supported" in str(_refusal(arch="amd64"))


def _binfmt(tmp_path: Path, handler: str | None) -> Path:
    (tmp_path / "status").write_text("enabled\n")
    if handler is not None:
        (tmp_path / "qemu-aarch64").write_text(handler)
    return tmp_path


def test_emulation_with_the_f_flag_is_usable(tmp_path: Path) -> None:
    handler = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\noffset 0\n"
    assert emulation_problem(Arch.ARM64, _binfmt(tmp_path, handler)) is None


@pytest.mark.parametrize(
    ("handler", "problem"),
    [
        (None, "no qemu-aarch64 binfmt handler"),
        ("disabled\nflags: PF\n", "disabled"),
        ("enabled\nflags: P\n", "lacks the F flag"),
    ],
)
def test_missing_emulation_is_a_usage_error_saying_why(tmp_path: Path, handler: str | None, problem: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        require_emulation(Arch.ARM64, "--arch arm64", _binfmt(tmp_path, handler))
    assert problem in str(caught.value)
    assert caught.value.exit_code == EXIT_USAGE


def test_unmounted_binfmt_misc_is_named(tmp_path: Path) -> None:
    assert emulation_problem(Arch.ARM64, tmp_path / "absent") == f"binfmt_misc is not mounted at {tmp_path / 'absent'}"


def test_verifying_an_arm64_artifact_on_an_amd64_host_without_emulation_is_refused_saying_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("slurm_factory.verify.host_arch", lambda: Arch.AMD64)
    monkeypatch.setattr(
        "slurm_factory.emulation.emulation_problem", lambda arch, binfmt_dir: "binfmt_misc is not mounted"
    )
    artifact = write_artifact(tmp_path, [Member(f"{ROOT}/bin/x", b"x")], manifest(arch="arm64"))
    with pytest.raises(ConfigurationError) as caught:
        verify_artifact(artifact, Settings(project_name="t", home=tmp_path / "home"))
    assert (
        "verifying slurm-24.11-trixie-software.tar.gz, an arm64 artifact, on this amd64 host needs this host to "
        "run arm64 binaries, and it cannot: binfmt_misc is not mounted" in str(caught.value)
    )
    assert caught.value.exit_code == EXIT_USAGE
