"""The Spack engine's generated files: golden files for every toolchain x {cpu, gpu} x {flat, hierarchy}, the
environment as YAML (round trip, quoted specs), and the mirrors / buildcache flags each request produces.

Regenerate golden files after an intended change with `SLURM_FACTORY_UPDATE_GOLDEN=1`."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from slurm_factory.buildcache import cached_specs
from slurm_factory.catalog import load_releases, toolchain_names
from slurm_factory.config import Settings
from slurm_factory.exceptions import ConfigurationError
from slurm_factory.patches import own_patches
from slurm_factory.plan import make_compiler_plan, make_plan, spack
from slurm_factory.request import make_compiler_request, make_request
from tests.unit.buildcache_entries import write_spec_entry

GOLDEN = Path(__file__).parent.parent / "golden" / "spack"
UPDATE = os.environ.get("SLURM_FACTORY_UPDATE_GOLDEN") == "1"
GOLDEN_FILES = ("Dockerfile", "build-spack.sh", "spack.yaml")
SPEC_KEYS = {"specs", "require", "spec", "core_compilers", "exclude"}


def _plan(tmp_path: Path, **options: Any) -> Any:
    request = make_request(slurm_version="24.11.5", engine="spack", **options)
    return make_plan(request, Settings(project_name="golden", home=tmp_path))


def _compare(directory: Path, rendered: dict[str, str]) -> None:
    if UPDATE:
        directory.mkdir(parents=True, exist_ok=True)
        for name, content in rendered.items():
            (directory / name).write_text(content, encoding="utf-8")
    for name, content in rendered.items():
        assert content == (directory / name).read_text(encoding="utf-8"), f"{directory.name}/{name} differs"


GOLDEN_CASES = [
    *itertools.product(toolchain_names(), (False, True), (False, True), ("build",)),
    *itertools.product(toolchain_names(), (False,), (False,), ("none", "all")),
    *itertools.product(toolchain_names(), (True,), (False,), ("all",)),
]


@pytest.mark.parametrize(("toolchain", "gpu", "hierarchy", "os_packages"), GOLDEN_CASES)
def test_spack_build_context_matches_golden_files(
    toolchain: str, *, gpu: bool, hierarchy: bool, os_packages: str, tmp_path: Path
) -> None:
    plan = _plan(tmp_path, toolchain=toolchain, gpu=gpu, enable_hierarchy=hierarchy, os_packages=os_packages)
    files = plan.context_files()
    mode = "" if os_packages == "build" else f"-os-{os_packages}"
    name = f"{toolchain}{'-gpu' if gpu else ''}{'-hierarchy' if hierarchy else ''}{mode}"
    golden = [file for file in (*GOLDEN_FILES, spack.OS_EXTERNALS_PLAN) if file in files]
    _compare(GOLDEN / name, {file: files[file].content for file in golden})


def test_overlay_repository_matches_golden_files(tmp_path: Path) -> None:
    files = _plan(tmp_path, toolchain="trixie").context_files()
    overlay = {name: files[name].content for name in files if name.startswith("spack_repo/")}
    package_dir = "spack_repo/slurm_factory/packages/slurm"
    patches = [patch.name for patch in own_patches()]
    assert set(overlay) == {
        "spack_repo/slurm_factory/repo.yaml",
        f"{package_dir}/package.py",
        *(f"{package_dir}/{name}" for name in patches),
    }, "the patches the recipe's patch() directives name sit beside package.py"
    for name in patches:
        assert f'patch("{name}", sha256=' in overlay[f"{package_dir}/package.py"]
    _compare(GOLDEN / "overlay", {Path(name).name: content for name, content in overlay.items()
                                  if name.endswith((".py", ".yaml"))})  # fmt: skip


def test_overlay_package_declares_every_catalog_release_and_compiles(tmp_path: Path) -> None:
    package = _plan(tmp_path, toolchain="trixie").context_files()["spack_repo/slurm_factory/packages/slurm/package.py"]
    compile(package.content, "package.py", "exec")  # valid Python (Spack imports it)
    for release in load_releases():
        assert f'version("{release.tag}", sha256="{release.sha256}")' in package.content


def _environment_text(tmp_path: Path, **options: Any) -> str:
    return str(_plan(tmp_path, toolchain="trixie", **options).context_files()["spack.yaml"].content)


def test_environment_yaml_round_trips_to_the_generated_data(tmp_path: Path) -> None:
    request = make_request(slurm_version="24.11.5", toolchain="trixie", gpu=True, enable_hierarchy=True)
    loaded = yaml.safe_load(_environment_text(tmp_path, gpu=True, enable_hierarchy=True))
    assert loaded == yaml.safe_load(yaml.safe_dump(_plain(spack.environment(request))))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return str(value) if isinstance(value, str) else value


def _spec_scalars(node: yaml.Node, *, under_spec_key: bool = False) -> list[yaml.ScalarNode]:
    found: list[yaml.ScalarNode] = []
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            found += _spec_scalars(value, under_spec_key=key.value in SPEC_KEYS)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found += _spec_scalars(item, under_spec_key=under_spec_key)
    elif isinstance(node, yaml.ScalarNode) and under_spec_key:
        found.append(node)
    return found


@pytest.mark.parametrize(
    "options",
    [{}, {"gpu": True}, {"enable_hierarchy": True}, {"compiler_version": "13.4.0", "use_local_buildcache": True}],
)
def test_every_spec_string_is_a_double_quoted_scalar(tmp_path: Path, options: dict[str, Any]) -> None:
    scalars = _spec_scalars(yaml.compose(_environment_text(tmp_path, **options)))
    assert len(scalars) >= 8
    assert [node.value for node in scalars if node.style != '"'] == []


@pytest.mark.parametrize(
    ("options", "mirrors", "use_buildcache"),
    [
        ({}, {"slurm-factory-sources"}, "never"),
        ({"buildcache": "deps"}, {"slurm-factory-sources", "slurm-factory-local"}, "package:never,dependencies:auto"),
        ({"buildcache": "all"}, {"slurm-factory-sources", "slurm-factory-local"}, "auto"),
        ({"use_local_buildcache": True}, {"slurm-factory-sources", "slurm-factory-local"},
         "package:never,dependencies:auto"),
        ({"buildcache": "all", "buildcache_url": "https://cache.example.org/slurm"},
         {"slurm-factory-sources", "slurm-factory-remote"}, "auto"),
        ({"buildcache": "all", "no_cache": True}, {"slurm-factory-sources", "slurm-factory-local"}, "never"),
        ({"publish": "all", "signing_key": "0x5EED1234ABCD5678"},
         {"slurm-factory-sources", "slurm-factory-publish"}, "never"),
    ],
)  # fmt: skip
def test_buildcache_and_publish_options_produce_the_documented_mirrors(
    tmp_path: Path, options: dict[str, Any], mirrors: set[str], use_buildcache: str
) -> None:
    plan = _plan(tmp_path, toolchain="trixie", **options)
    environment = yaml.safe_load(plan.context_files()["spack.yaml"].content)
    assert set(environment["spack"]["mirrors:"]) == mirrors
    assert f"--use-buildcache {use_buildcache} " in plan.context_files()["build-spack.sh"].content
    if "slurm-factory-remote" in mirrors:
        assert environment["spack"]["mirrors:"]["slurm-factory-remote"]["signed"] is True
        assert "buildcache keys --install --trust" in plan.context_files()["build-spack.sh"].content


@pytest.mark.parametrize(
    ("publish", "only"), [("slurm", " --only package"), ("deps", " --only dependencies"), ("all", "")]
)
def test_publish_modes_push_the_documented_part_of_the_stack(tmp_path: Path, publish: str, only: str) -> None:
    script = _plan(tmp_path, toolchain="trixie", publish=publish, signing_key="0x5EED1234ABCD5678").context_files()
    assert "buildcache push" not in script["build-spack.sh"].content  # the key is not there while packages build
    push = next(line for line in script["publish-spack.sh"].content.splitlines() if "buildcache push" in line)
    assert push.endswith(f"--update-index{only} slurm-factory-publish")
    assert '--key "$SLURM_FACTORY_SIGNING_KEY"' in push


def test_publishing_to_the_local_mirror_mounts_it_writable(tmp_path: Path) -> None:
    plain = _plan(tmp_path, toolchain="trixie", buildcache="all")
    publishing = _plan(tmp_path, toolchain="trixie", publish="slurm", signing_key="0x5EED1234ABCD5678")

    def buildcache_mount(plan: Any) -> Any:
        return next(m for m in plan.container.mounts if str(m.container) == "/var/cache/slurm-factory/buildcache")

    assert buildcache_mount(plain).read_only is True
    assert buildcache_mount(publishing).read_only is False


def test_hierarchy_and_gpu_change_modules_and_view(tmp_path: Path) -> None:
    flat = yaml.safe_load(_environment_text(tmp_path))["spack"]
    tree = yaml.safe_load(_environment_text(tmp_path, enable_hierarchy=True, gpu=True))["spack"]
    assert flat["modules"]["default"]["lmod"]["hierarchy:"] == []
    assert tree["modules"]["default"]["lmod"]["hierarchy:"] == ["mpi"]
    assert tree["modules"]["default"]["lmod"]["core_compilers"] == ["gcc@14.2.0"]
    assert flat["view"]["default"]["exclude"] == ["gcc-runtime"]
    assert tree["view"]["default"]["exclude"] == ["cuda", "rocm-smi-lib", "gcc-runtime"]
    assert tree["specs"][0].endswith("+nvml +rsmi")


def test_compiler_version_installs_that_gcc_from_the_buildcache_and_requires_it(tmp_path: Path) -> None:
    plan = _plan(tmp_path, toolchain="rockylinux8", compiler_version="13.4.0", use_local_buildcache=True)
    files = plan.context_files()
    slurm = yaml.safe_load(files["spack.yaml"].content)["spack"]
    assert not [spec for spec in slurm["specs"] if spec.startswith("gcc")]
    assert slurm["packages"]["c"]["require"] == ["gcc@13.4.0"]
    [external] = slurm["packages"]["gcc"]["externals"]
    assert external["spec"].startswith("gcc@13.4.0 ")
    assert external["prefix"] == "/opt/slurm-factory/spack/compiler"
    assert slurm["packages"]["gcc"]["buildable"] is False
    compiler = yaml.safe_load(files["compiler/spack.yaml"].content)["spack"]
    assert compiler["specs"] == ["gcc@13.4.0 languages=c,c++,fortran +binutils"]
    assert compiler["view"]["default"]["root"] == "/opt/slurm-factory/spack/compiler"
    assert set(compiler["mirrors:"]) == {"slurm-factory-local"}
    script = files["build-spack.sh"].content
    assert 'spack -e "$ENV_DIR/compiler" install --jobs "$JOBS" --use-buildcache only' in script
    assert script.index("stage compiler") < script.index("stage concretize")


def test_compiler_install_environment_matches_what_build_compiler_pushes(tmp_path: Path) -> None:
    """Same specs and packages, so the buildcache's GCC is the one the Slurm build installs."""
    slurm = _plan(tmp_path, toolchain="rockylinux8", compiler_version="13.4.0", use_local_buildcache=True)
    installed = yaml.safe_load(slurm.context_files()["compiler/spack.yaml"].content)["spack"]
    request = make_compiler_request(compiler_version="13.4.0", toolchain="rockylinux8")
    built = make_compiler_plan(request, Settings(project_name="golden", home=tmp_path)).context_files()
    pushed = yaml.safe_load(built["spack.yaml"].content)["spack"]
    for key in ("specs", "packages", "repos", "concretizer"):
        assert installed[key] == pushed[key], key


def test_spack_source_directory_is_copied_into_the_image_instead_of_cloned(tmp_path: Path) -> None:
    checkout = tmp_path / "spack-checkout"
    (checkout / "bin").mkdir(parents=True)
    (checkout / "bin" / "spack").write_text("#!/bin/sh\n")
    cloned = _plan(tmp_path, toolchain="trixie")
    local = _plan(tmp_path, toolchain="trixie", spack_source=str(checkout))
    assert "git clone" in cloned.image.dockerfile
    assert "git clone" not in local.image.dockerfile
    assert "COPY spack-source/ /opt/spack/" in local.image.dockerfile
    assert local.image.context_paths == {"spack-source": checkout}
    assert local.image.tag != cloned.image.tag


def test_spack_source_url_is_downloaded_by_the_image_build(tmp_path: Path) -> None:
    url = "https://mirror.example.org/spack-1.1.0.tar.gz"
    plan = _plan(tmp_path, toolchain="trixie", spack_source=url)
    assert f"curl -fsSL '{url}'" in plan.image.dockerfile
    assert plan.image.context_paths == {}


@pytest.mark.parametrize("toolchain", toolchain_names())
def test_compiler_build_context_matches_golden_files(toolchain: str, tmp_path: Path) -> None:
    request = make_compiler_request(compiler_version="13.4.0", toolchain=toolchain)
    files = make_compiler_plan(request, Settings(project_name="golden", home=tmp_path)).context_files()
    _compare(
        GOLDEN / f"compiler-{toolchain}",
        {
            name: files[name].content
            for name in ("Dockerfile", "build-compiler.sh", "publish-compiler.sh", "spack.yaml")
        },
    )


def test_compiler_uses_the_same_toolchain_image_as_slurm_builds(tmp_path: Path) -> None:
    settings = Settings(project_name="golden", home=tmp_path)
    compiler = make_compiler_plan(make_compiler_request(compiler_version="13.4.0", toolchain="jammy"), settings)
    # GCC takes nothing from the OS (its hash must be the one `--compiler-version` installs): the `none` image.
    slurm = _plan(tmp_path, toolchain="jammy", os_packages="none")
    assert compiler.image.reference == slurm.image.reference
    assert compiler.image.reference != _plan(tmp_path, toolchain="jammy").image.reference


def test_compiler_version_without_a_buildcache_is_refused() -> None:
    with pytest.raises(ConfigurationError) as caught:
        make_request(slurm_version="24.11.5", toolchain="rockylinux8", compiler_version="10.5.0")
    assert "--compiler-version 10.5.0 needs a binary mirror" in str(caught.value)
    assert "build-compiler --compiler-version 10.5.0 --toolchain rockylinux8" in str(caught.value.hint)


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "clearsigned"])
def test_cached_compiler_is_found_in_the_v3_buildcache_layout_by_target(tmp_path: Path, *, signed: bool) -> None:
    amd64 = write_spec_entry(tmp_path, "gcc", "10.5.0", "x86_64_v2", signed=signed)
    assert cached_specs(tmp_path, "gcc", "10.5.0") == [amd64]
    assert cached_specs(tmp_path, "gcc", "10.5.0", target="x86_64_v2") == [amd64]
    assert cached_specs(tmp_path, "gcc", "10.5.0", target="aarch64") == []
    arm64 = write_spec_entry(tmp_path, "gcc", "10.5.0", "aarch64", signed=signed)
    assert cached_specs(tmp_path, "gcc", "10.5.0", target="aarch64") == [arm64]
    assert cached_specs(tmp_path, "gcc", "13.4.0") == []


def test_an_unreadable_buildcache_entry_counts_as_absent(tmp_path: Path) -> None:
    manifest = write_spec_entry(tmp_path, "gcc", "10.5.0", "x86_64_v2")
    for blob in (tmp_path / "blobs").rglob("*"):
        if blob.is_file():
            blob.unlink()
    assert cached_specs(tmp_path, "gcc", "10.5.0", target="x86_64_v2") == []
    manifest.write_text('{"version": 3, "data": [{"mediaType": "application/vnd.spack.spec.v5+json", '
                        '"checksumAlgorithm": "sha256", "checksum": "../../../../etc/passwd"}]}')  # fmt: skip
    assert cached_specs(tmp_path, "gcc", "10.5.0", target="x86_64_v2") == []


def _mount(plan: Any, container_path: str) -> Any:
    return next((m for m in plan.container.mounts if str(m.container) == container_path), None)


def test_a_file_publish_url_is_mounted_writable_and_pushed_to_at_its_container_path(tmp_path: Path) -> None:
    target = tmp_path / "site mirror"
    plan = _plan(
        tmp_path, toolchain="trixie", publish="all", signing_key="0x5EED1234ABCD5678", publish_url=target.as_uri()
    )
    mirrors = yaml.safe_load(plan.context_files()["spack.yaml"].content)["spack"]["mirrors:"]
    assert mirrors["slurm-factory-publish"]["url"] == "file:///var/cache/slurm-factory/publish-mirror"
    mount = _mount(plan, "/var/cache/slurm-factory/publish-mirror")
    assert mount is not None and mount.host == target and mount.read_only is False
    assert _mount(plan, "/var/cache/slurm-factory/buildcache").read_only is True  # the local cache is not the target


def test_a_file_buildcache_url_is_mounted_read_only(tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir()
    plan = _plan(tmp_path, toolchain="trixie", buildcache="all", buildcache_url=(tmp_path / "cache").as_uri())
    mirrors = yaml.safe_load(plan.context_files()["spack.yaml"].content)["spack"]["mirrors:"]
    assert mirrors["slurm-factory-remote"]["url"] == "file:///var/cache/slurm-factory/remote-buildcache"
    mount = _mount(plan, "/var/cache/slurm-factory/remote-buildcache")
    assert mount is not None and mount.host == tmp_path / "cache" and mount.read_only is True
    assert _mount(plan, "/var/cache/slurm-factory/publish-mirror") is None


def test_s3_mirrors_carry_the_endpoint_and_the_container_finds_credentials_files_not_keys(tmp_path: Path) -> None:
    plan = _plan(
        tmp_path, toolchain="trixie", buildcache="deps", buildcache_url="s3://cache/spack", publish="slurm",
        signing_key="0x5EED1234ABCD5678", publish_url="s3://site/slurm", s3_endpoint_url="http://127.0.0.1:9000/",
    )  # fmt: skip
    mirrors = yaml.safe_load(plan.context_files()["spack.yaml"].content)["spack"]["mirrors:"]
    assert mirrors["slurm-factory-publish"] == {
        "url": "s3://site/slurm", "endpoint_url": "http://127.0.0.1:9000", "binary": True, "source": False,
        "signed": True,
    }  # fmt: skip
    assert mirrors["slurm-factory-remote"]["endpoint_url"] == "http://127.0.0.1:9000"
    assert "endpoint_url" not in mirrors["slurm-factory-sources"]
    environment = plan.container.environment
    assert environment["AWS_SHARED_CREDENTIALS_FILE"] == "/run/slurm-factory-secrets/aws-credentials"
    assert environment["AWS_CONFIG_FILE"] == "/run/slurm-factory-secrets/aws-config"
    assert environment["AWS_EC2_METADATA_DISABLED"] == "true"
    assert not [name for name in environment if name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
    assert plan.container.publish_command == ("bash", "/opt/slurm-factory/plan/publish-spack.sh")


def test_s3_endpoint_comes_from_the_aws_sdk_variable_when_no_option_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://rgw.example.org")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://s3.example.org:7480")
    plan = _plan(tmp_path, toolchain="trixie", buildcache="all", buildcache_url="s3://cache")
    mirrors = yaml.safe_load(plan.context_files()["spack.yaml"].content)["spack"]["mirrors:"]
    assert mirrors["slurm-factory-remote"]["endpoint_url"] == "https://s3.example.org:7480"
    aws = _plan(tmp_path, toolchain="trixie", buildcache="all", buildcache_url="https://cache.example.org/spack")
    assert "AWS_CONFIG_FILE" not in aws.container.environment


def test_without_publish_there_is_no_publish_step(tmp_path: Path) -> None:
    plan = _plan(tmp_path, toolchain="trixie")
    assert plan.container.publish_command is None
    assert "publish-spack.sh" not in plan.context_files()


def test_build_compiler_fills_the_local_buildcache_and_with_publish_all_the_given_mirror(tmp_path: Path) -> None:
    settings = Settings(project_name="golden", home=tmp_path)
    request = make_compiler_request(
        compiler_version="13.4.0", toolchain="rockylinux8", publish="all", signing_key="0x5EED1234ABCD5678",
        publish_url="s3://site/compilers", s3_endpoint_url="http://127.0.0.1:9000",
    )  # fmt: skip
    plan = make_compiler_plan(request, settings)
    files = plan.context_files()
    pushes = [line for line in files["publish-compiler.sh"].content.splitlines() if "buildcache push" in line]
    assert [line.split()[-1] for line in pushes] == ["slurm-factory-local", "slurm-factory-publish"]
    assert all('--key "$SLURM_FACTORY_SIGNING_KEY"' in line for line in pushes)
    mirrors = yaml.safe_load(files["spack.yaml"].content)["spack"]["mirrors:"]
    assert mirrors["slurm-factory-publish"]["url"] == "s3://site/compilers"
    assert mirrors["slurm-factory-local"]["signed"] is True
    assert plan.container.environment["AWS_CONFIG_FILE"] == "/run/slurm-factory-secrets/aws-config"
    assert _mount(plan, "/var/cache/slurm-factory/buildcache").read_only is False


@pytest.mark.parametrize("publish", ["slurm", "deps"])
def test_build_compiler_refuses_partial_publish_modes(publish: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        make_compiler_request(
            compiler_version="13.4.0", toolchain="noble", publish=publish, signing_key="0x5EED1234ABCD5678"
        )
    assert raised.value.exit_code == 2
    assert f"--publish {publish}" in raised.value.message and "none" in raised.value.message


def test_a_publish_url_naming_the_local_buildcache_is_the_default_target(tmp_path: Path) -> None:
    settings = Settings(project_name="golden", home=tmp_path)
    local = settings.buildcache_dir.as_uri()
    plan = make_plan(
        make_request(slurm_version="24.11.5", toolchain="trixie", publish="slurm", signing_key="0x5EED1234ABCD5678",
                     publish_url=local),
        settings,
    )  # fmt: skip
    assert _mount(plan, "/var/cache/slurm-factory/publish-mirror") is None
    assert _mount(plan, "/var/cache/slurm-factory/buildcache").read_only is False
    compiler = make_compiler_plan(
        make_compiler_request(compiler_version="13.4.0", toolchain="trixie", publish="all",
                              signing_key="0x5EED1234ABCD5678", publish_url=local),
        settings,
    )  # fmt: skip
    pushes = [
        line
        for line in compiler.context_files()["publish-compiler.sh"].content.splitlines()
        if "buildcache push" in line
    ]
    assert [line.split()[-1] for line in pushes] == ["slurm-factory-local"]


def _air_gapped_inputs(root: Path) -> dict[str, str]:
    spack_checkout = root / "spack"
    (spack_checkout / "bin").mkdir(parents=True)
    (spack_checkout / "bin" / "spack").write_text("#!/bin/sh\n")
    packages = root / "spack-packages" / "repos" / "spack_repo" / "builtin"
    packages.mkdir(parents=True)
    (packages / "repo.yaml").write_text("repo:\n  namespace: builtin\n")
    wheels = root / "wheels"
    wheels.mkdir()
    for name in ("clingo-5.8.3-cp313-cp313-manylinux_2_28_x86_64.whl", "boto3-1.44.8-py3-none-any.whl"):
        (wheels / name).write_bytes(b"wheel")
    return {
        "spack_source": str(spack_checkout),
        "spack_packages_source": str(root / "spack-packages"),
        "python_wheels": str(wheels),
    }


def test_air_gapped_toolchain_image_fetches_nothing(tmp_path: Path) -> None:
    inputs = _air_gapped_inputs(tmp_path / "inputs")
    plan = _plan(tmp_path, toolchain="trixie", **inputs)
    dockerfile = plan.image.dockerfile
    assert (
        "git clone" not in dockerfile and "git -C" not in dockerfile and "curl" not in dockerfile.split("AS spack")[1]
    )
    assert "COPY spack-source/ /opt/spack/" in dockerfile
    assert "COPY spack-packages-source/ /opt/spack-packages/" in dockerfile
    assert "--no-index --find-links /tmp/slurm-factory-wheels 'clingo>=5.8,<5.9' 'boto3>=1.34,<2'" in dockerfile
    assert {name: str(path) for name, path in plan.image.context_paths.items()} == {
        "spack-source": inputs["spack_source"],
        "spack-packages-source": inputs["spack_packages_source"],
        "python-wheels": inputs["python_wheels"],
    }


def test_a_changed_local_spack_packages_checkout_gets_a_new_toolchain_image(tmp_path: Path) -> None:
    inputs = _air_gapped_inputs(tmp_path / "inputs")
    first = _plan(tmp_path, toolchain="trixie", **inputs).image.tag
    assert _plan(tmp_path, toolchain="trixie", **inputs).image.tag == first
    package = Path(inputs["spack_packages_source"]) / "repos" / "spack_repo" / "builtin" / "packages" / "munge"
    package.mkdir(parents=True)
    (package / "package.py").write_text("# a newer munge recipe\n")
    assert _plan(tmp_path, toolchain="trixie", **inputs).image.tag != first


def test_packages_from_a_tarball_or_a_url_are_unpacked_into_place(tmp_path: Path) -> None:
    tarball = tmp_path / "packages.tar.gz"
    tarball.write_bytes(b"tar")
    from_tarball = _plan(tmp_path, toolchain="trixie", spack_packages_source=str(tarball)).image
    assert "ADD spack-packages-source.tar.gz /opt/spack-packages-source/" in from_tarball.dockerfile
    assert from_tarball.context_paths == {"spack-packages-source.tar.gz": tarball}
    url = "https://mirror.example.org/spack-packages.tar.gz"
    from_url = _plan(tmp_path, toolchain="trixie", spack_packages_source=url).image.dockerfile
    assert f"curl -fsSL '{url}' | tar -xz --strip-components=1 -C /opt/spack-packages" in from_url


# --- the stored concretization -------------------------------------------------------------------------------------


def _concretization_inputs(tmp_path: Path, **options: Any) -> str:
    return str(
        _plan(tmp_path, toolchain="trixie", **options).container.environment["SLURM_FACTORY_CONCRETIZATION_INPUTS"]
    )


def test_where_a_build_pushes_or_reads_binaries_does_not_change_its_concretization_key(tmp_path: Path) -> None:
    plain = _concretization_inputs(tmp_path)

    assert _concretization_inputs(tmp_path, publish="all", signing_key="0x5EED1234ABCD5678") == plain
    assert _concretization_inputs(tmp_path, buildcache="all") == plain
    assert _concretization_inputs(tmp_path, verify=True) == plain
    # --no-cache solves afresh and its lock replaces the stored one of the same inputs
    assert _concretization_inputs(tmp_path, no_cache=True) == plain


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"gpu": True}, id="gpu"),
        pytest.param({"os_packages": "all"}, id="os-packages"),
        pytest.param({"slurm_version": "24.11.7"}, id="release"),
        pytest.param({"base_image": "registry.site.example/debian:trixie"}, id="base-image"),
    ],
)
def test_what_decides_the_concretization_changes_its_key(tmp_path: Path, options: dict[str, Any]) -> None:
    request = make_request(**{"slurm_version": "24.11.5", "engine": "spack", "toolchain": "trixie", **options})
    changed = make_plan(request, Settings(project_name="golden", home=tmp_path))

    assert changed.container.environment["SLURM_FACTORY_CONCRETIZATION_INPUTS"] != _concretization_inputs(tmp_path)


def test_a_site_patch_changes_the_concretization_key(tmp_path: Path) -> None:
    patch = tmp_path / "site.patch"
    patch.write_text("--- a/NEWS\n+++ b/NEWS\n@@ -1 +1 @@\n-x\n+y\n", encoding="utf-8")

    assert _concretization_inputs(tmp_path, patches=[str(patch)]) != _concretization_inputs(tmp_path)


def test_the_stored_concretizations_are_mounted_and_named_in_the_script(tmp_path: Path) -> None:
    plan = _plan(tmp_path, toolchain="trixie")
    mount = next(m for m in plan.container.mounts if str(m.container) == "/var/cache/slurm-factory/concretizations")
    script = plan.context_files()["build-spack.sh"].content

    assert mount.host == tmp_path / "spack-concretizations" and not mount.read_only
    assert "stored_concretization=/var/cache/slurm-factory/concretizations/$concretization_key.lock" in script
    assert 'cp "$stored_concretization" "$ENV_DIR/spack.lock"' in script
    fresh = _plan(tmp_path, toolchain="trixie", no_cache=True).context_files()["build-spack.sh"].content
    assert 'cp "$stored_concretization" "$ENV_DIR/spack.lock"' not in fresh, "--no-cache always solves afresh"
