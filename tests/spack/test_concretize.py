"""With a real Spack checkout (`SLURM_FACTORY_TEST_SPACK_ROOT`), the generated environments concretize offline with
our overlay package repository. Skipped, with the reason, when no checkout is configured.

Set up as in ../shared/FACTS.md: Spack v1.1.0 with the builtin packages of spack-packages releases/v2025.11 in its
site configuration, bootstrap disabled, mirrors emptied, and SPACK_PYTHON naming a Python that has clingo. Only the
container paths of the environment (repository, install tree, caches, mirrors, view, module roots) are rewritten
for the host; specs, packages, compilers and every other setting are checked as generated. The environments are
made with `--os-packages none`: a toolchain OS's packages are only in its image, where test_spack_build.py
concretizes the other modes.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from slurm_factory.catalog import toolchain_names
from slurm_factory.config import Settings
from slurm_factory.plan import make_compiler_plan, make_plan, write_plan_dir
from slurm_factory.request import make_compiler_request, make_request
from tests.e2e.helpers import report_measurement

SPACK_ROOT = os.environ.get("SLURM_FACTORY_TEST_SPACK_ROOT")
# The generic target of spack.yaml for this host's machine.
HOST_TARGETS = {"x86_64": "x86_64_v2", "aarch64": "aarch64"}
pytestmark = [
    pytest.mark.spack,
    pytest.mark.skipif(
        not SPACK_ROOT,
        reason="SLURM_FACTORY_TEST_SPACK_ROOT is unset: no Spack checkout to concretize generated environments with",
    ),
]


def _host_environment(plan_dir: Path, scratch: Path) -> Path:
    """The generated spack.yaml with its container paths moved to `scratch`; nothing else changed but, for another
    arch than this host's, what lets Spack concretize for it here: its target allowed although the host cannot run
    it, and named on the root specs too (Spack adds a foreign target to its candidates only from the specs; the
    generated `packages: all: require: target=...` already asks the same of every node)."""
    document: dict[str, Any] = yaml.safe_load((plan_dir / "spack.yaml").read_text())
    spack = document["spack"]
    [target] = spack["packages"]["all"]["require"]
    if target != f"target={HOST_TARGETS[platform.machine()]}":
        spack["concretizer"]["targets"] = {"host_compatible": False}
        spack["specs"] = [f"{spec} {target}" for spec in spack["specs"]]
    repos = spack["repos"]
    spack["repos"] = {
        name: str(plan_dir / "spack_repo" / name) for name in repos if name != "builtin"
    }  # builtin: the checkout's own (pinned) configuration
    config = spack["config"]
    config["install_tree"]["root"] = str(scratch / "opt")
    config["source_cache"] = str(scratch / "sources")
    config["binary_index_root"] = str(scratch / "binary_index")
    config["build_stage"] = [str(scratch / "stage")]
    for name, mirror in spack["mirrors:"].items():
        if mirror["url"].startswith("file://"):
            (scratch / "mirrors" / name).mkdir(parents=True, exist_ok=True)
            mirror["url"] = (scratch / "mirrors" / name).as_uri()
    spack["view"]["default"]["root"] = str(scratch / "view")
    if "modules" in spack:
        spack["modules"]["default"]["roots"]["lmod"] = str(scratch / "modules")
    environment = scratch / "env"
    environment.mkdir()
    (environment / "spack.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return environment


def _concretize(environment: Path) -> dict[str, Any]:
    started = time.monotonic()
    done = subprocess.run(
        [f"{SPACK_ROOT}/bin/spack", "-e", str(environment), "concretize", "--fresh"],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-6000:] + done.stdout[-3000:]
    lock = json.loads((environment / "spack.lock").read_text())
    return {"seconds": seconds, "specs": list(lock["concrete_specs"].values()), "output": done.stdout}


def _spack_config(environment: Path, path: str) -> Any:
    """A configuration value as Spack itself resolves it for the environment (defaults and overrides applied)."""
    done = subprocess.run(
        [f"{SPACK_ROOT}/bin/spack", "-e", str(environment), "python", "-c",
         f"import json, spack.config; print(json.dumps(spack.config.get({path!r})))"],
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def _slurm_case(tmp_path: Path, toolchain: str, **options: Any) -> dict[str, Any]:
    # On this host nothing is taken from the OS: the toolchain's OS packages are only in its image (tests/spack/
    # test_spack_build.py concretizes --os-packages build and all there).
    request = make_request(slurm_version="24.11.5", toolchain=toolchain, os_packages="none", **options)
    plan_dir = tmp_path / "plan"
    write_plan_dir(make_plan(request, Settings(project_name="concretize", home=tmp_path / "home")), plan_dir)
    environment = _host_environment(plan_dir, tmp_path / "scratch")
    return {**_concretize(environment), "environment": environment}


def _named(result: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [spec for spec in result["specs"] if spec["name"] == name]


@pytest.mark.parametrize("toolchain", ["trixie", "bookworm"])
@pytest.mark.parametrize("variant", [{}, {"gpu": True}, {"enable_hierarchy": True}], ids=["cpu", "gpu", "hierarchy"])
def test_slurm_environment_concretizes_with_our_overlay(
    tmp_path: Path, toolchain: str, variant: dict[str, Any]
) -> None:
    result = _slurm_case(tmp_path, toolchain, **variant)
    report_measurement(
        f"concretize {toolchain} {variant or 'cpu'}: {result['seconds']:.0f}s, {len(result['specs'])} specs"
    )
    [slurm] = _named(result, "slurm")
    assert slurm["namespace"] == "slurm_factory"
    assert slurm["version"] == "24-11-5-1"
    parameters = slurm["parameters"]
    assert parameters["lua"] is True and parameters["pmix"] is True and parameters["cgroup"] is True
    assert parameters["nvml"] is variant.get("gpu", False)
    assert parameters["rsmi"] is variant.get("gpu", False)
    assert len(_named(result, "pmix")) == 1, "slurm and openmpi must share one pmix"
    hierarchy = _spack_config(result["environment"], "modules:default:lmod:hierarchy")
    assert hierarchy == (["mpi"] if variant.get("enable_hierarchy") else [])
    mirrors = _spack_config(result["environment"], "mirrors")
    assert set(mirrors) == {"slurm-factory-sources"}, "Spack's default mirrors must not be merged in"


@pytest.mark.parametrize("toolchain", toolchain_names())
def test_arm64_environment_concretizes_for_the_generic_aarch64_target(tmp_path: Path, toolchain: str) -> None:
    result = _slurm_case(tmp_path, toolchain, arch="arm64")
    report_measurement(f"concretize {toolchain} arm64: {result['seconds']:.0f}s, {len(result['specs'])} specs")
    targets = {spec["name"]: spec["arch"]["target"] for spec in result["specs"] if "arch" in spec}
    assert set(targets.values()) == {"aarch64"}, targets
    [slurm] = _named(result, "slurm")
    assert slurm["parameters"]["pmix"] is True


def test_arm64_compiler_environment_concretizes(tmp_path: Path) -> None:
    request = make_compiler_request(compiler_version="13.4.0", toolchain="rockylinux9", arch="arm64")
    plan_dir = tmp_path / "plan"
    write_plan_dir(make_compiler_plan(request, Settings(project_name="concretize", home=tmp_path / "home")), plan_dir)
    result = _concretize(_host_environment(plan_dir, tmp_path / "scratch"))
    [gcc] = [spec for spec in _named(result, "gcc") if spec.get("version") == "13.4.0"]
    assert gcc["arch"]["target"] == "aarch64"


def test_compiler_environment_concretizes(tmp_path: Path) -> None:
    request = make_compiler_request(compiler_version="13.4.0", toolchain="trixie")
    plan_dir = tmp_path / "plan"
    write_plan_dir(make_compiler_plan(request, Settings(project_name="concretize", home=tmp_path / "home")), plan_dir)
    result = _concretize(_host_environment(plan_dir, tmp_path / "scratch"))
    report_measurement(f"concretize build-compiler gcc@13.4.0 trixie: {result['seconds']:.0f}s")
    versions = {spec.get("version") for spec in _named(result, "gcc")}
    assert "13.4.0" in versions


def test_slurm_with_a_compiler_version_concretizes_with_that_gcc(tmp_path: Path) -> None:
    result = _slurm_case(tmp_path, "trixie", compiler_version="13.4.0", use_local_buildcache=True)
    report_measurement(f"concretize slurm with gcc@13.4.0 on trixie: {result['seconds']:.0f}s")
    assert {spec.get("version") for spec in _named(result, "gcc")} == {"13.4.0"}


MIRRORS_AS_SPACK_SEES_THEM = """
import json
from spack.mirrors.mirror import MirrorCollection
mirrors = MirrorCollection(binary=True)
seen = {name: [m.push_url, m.fetch_url, m.get_endpoint_url("push"), m.signed] for name, m in mirrors.items()}
print(json.dumps(seen))
"""


def test_s3_mirrors_as_generated_are_read_by_spack_with_their_endpoint(tmp_path: Path) -> None:
    request = make_request(
        slurm_version="24.11.5", toolchain="trixie", buildcache="deps", buildcache_url="s3://cache/spack",
        publish="slurm", signing_key="0x5EED1234ABCD5678", publish_url="s3://site/slurm",
        s3_endpoint_url="http://127.0.0.1:9000", os_packages="none",
    )  # fmt: skip
    plan_dir = tmp_path / "plan"
    write_plan_dir(make_plan(request, Settings(project_name="mirrors", home=tmp_path / "home")), plan_dir)
    environment = _host_environment(plan_dir, tmp_path / "scratch")
    script = tmp_path / "mirrors.py"
    script.write_text(MIRRORS_AS_SPACK_SEES_THEM)
    done = subprocess.run(
        [f"{SPACK_ROOT}/bin/spack", "-e", str(environment), "python", str(script)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    mirrors = json.loads(done.stdout.strip().splitlines()[-1])
    assert mirrors == {
        "slurm-factory-remote": ["s3://cache/spack", "s3://cache/spack", "http://127.0.0.1:9000", True],
        "slurm-factory-publish": ["s3://site/slurm", "s3://site/slurm", "http://127.0.0.1:9000", True],
    }
