"""Inside the real Spack toolchain image, built offline from local copies (`--spack-source`,
`--spack-packages-source`, `--python-wheels`): the build container's steps with the generated environment, where a
one-package stand-in replaces Slurm (Slurm's dependency sources cannot be downloaded here), then the generated
publish step (`publish-spack.sh`) pushes it signed to an S3 mirror (moto's server) with the key and credentials
the builder hands over for that step only.

Needs SLURM_FACTORY_TEST_SPACK_SOURCE and SLURM_FACTORY_TEST_SPACK_PACKAGES_SOURCE (a Spack v1.1.0 and a
spack-packages tarball or clean checkout: the ones slurm-factory pins) and a Docker engine; skipped otherwise.
The wheels for the image's Python come from PyPI through `pip download` on the host.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path, PurePosixPath
from typing import Any

import docker
import pytest
import yaml
from pydantic import SecretStr

from slurm_factory.builder import _build_handout, _ensure_toolchain_image
from slurm_factory.config import Settings
from slurm_factory.docker_engine import DockerSession
from slurm_factory.engines.container import run_build
from slurm_factory.plan import PlanFile, layout, make_plan
from slurm_factory.plan.spack_yaml import dump_spack_yaml
from slurm_factory.progress import BuildMonitor, SilentDisplay
from slurm_factory.request import make_request
from slurm_factory.s3 import S3Access
from slurm_factory.secret_input import decode_private_key
from slurm_factory.signing import SigningKey
from tests.e2e.helpers import make_throwaway_key, remove_project, report_measurement
from tests.s3server import S3Server
from tests.spack.inputs import NEEDS_SPACK, PACKAGES_SOURCE, SPACK_SOURCE, wheels_for_trixie

DATA = Path(__file__).parent
pytestmark = [
    pytest.mark.spack,
    pytest.mark.docker,
    NEEDS_SPACK,
]


def _stand_in_files(plan: Any) -> dict[PurePosixPath, PlanFile]:
    """The generated files, with the stand-in package for Slurm in the environment and its repository beside it."""
    files = dict(plan.container.files)
    environment_path = layout.PLAN / "spack.yaml"
    environment = yaml.safe_load(files[environment_path].content)
    spack = environment["spack"]
    spack["specs"] = ["sf-hello"]
    spack["repos"]["sf_test"] = str(layout.PLAN / "spack_repo" / "sf_test")
    files[environment_path] = PlanFile(dump_spack_yaml(environment))
    repo = DATA / "repo" / "spack_repo" / "sf_test"
    for path in repo.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            files[layout.PLAN / "spack_repo" / "sf_test" / path.relative_to(repo)] = PlanFile(path.read_text())
    return files


def _with_script(plan: Any, name: str, files: dict[PurePosixPath, PlanFile] | None = None) -> Any:
    """The plan with its build step replaced by tests/spack/data/<name> (given the install prefix to create)."""
    files = {**(files or plan.container.files), layout.PLAN / name: PlanFile((DATA / "data" / name).read_text(), 0o755)}
    command = ("bash", str(layout.PLAN / name), str(plan.container.install_prefix))
    return dataclasses.replace(plan, container=dataclasses.replace(plan.container, files=files, command=command))


def test_the_generated_slurm_environment_concretizes_inside_the_toolchain_image(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    settings = Settings(project_name="sf-test-spack-concretize", home=tmp_path / "home", jobs=2)
    request = make_request(
        slurm_version="24.11.5", toolchain="trixie", spack_source=SPACK_SOURCE, spack_packages_source=PACKAGES_SOURCE,
        python_wheels=str(wheels_for_trixie(tmp_path / "wheels")),
    )  # fmt: skip
    plan = _with_script(make_plan(request, settings), "concretize.sh")
    settings.ensure_dirs()
    session = DockerSession(settings.project_name)
    try:
        with BuildMonitor(tmp_path / "build.log", SilentDisplay()) as monitor:
            _ensure_toolchain_image(plan, session, monitor, home=settings.home)
            output = run_build(plan, session, monitor, scratch=tmp_path)
    finally:
        remove_project(docker_client, settings.project_name)
    specs = json.loads(output.meta["spack.lock"])["concrete_specs"].values()
    [slurm] = [spec for spec in specs if spec["name"] == "slurm"]
    assert (slurm["version"], slurm["namespace"]) == ("24-11-5-1", "slurm_factory")
    assert {"openmpi", "pmix", "munge"} <= {spec["name"] for spec in specs}
    [gcc] = [spec for spec in specs if spec["name"] == "gcc"]
    assert gcc["external"]["path"] == "/usr"  # the image's own compiler, registered by the environment


def test_the_generated_publish_step_pushes_signed_to_s3_from_the_real_toolchain_image(
    tmp_path: Path, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, docker_client: docker.DockerClient
) -> None:
    settings = Settings(project_name="sf-test-spack-image", home=tmp_path / "home", jobs=2)
    key = make_throwaway_key(tmp_path)
    bucket = s3_server.new_bucket()
    request = make_request(
        slurm_version="24.11.5", toolchain="trixie", publish="slurm", signing_key=key.fingerprint,
        gpg_private_key=f"@{key.key_file}", publish_url=f"s3://{bucket}/spack", s3_endpoint_url=s3_server.endpoint,
        spack_source=SPACK_SOURCE, spack_packages_source=PACKAGES_SOURCE,
        python_wheels=str(wheels_for_trixie(tmp_path / "wheels")),
    )  # fmt: skip
    plan = make_plan(request, settings)
    stand_in = _with_script(plan, "stand-in-build.sh", _stand_in_files(plan))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    settings.ensure_dirs()
    session = DockerSession(settings.project_name)
    try:
        with (
            BuildMonitor(tmp_path / "build.log", SilentDisplay()) as monitor,
            SigningKey(key.fingerprint, decode_private_key(f"@{key.key_file}"), SecretStr(key.passphrase)) as signer,
            S3Access(s3_server.endpoint, required=True, purpose="--publish-url") as access,
        ):
            _ensure_toolchain_image(stand_in, session, monitor, home=settings.home)
            output = run_build(
                stand_in, session, monitor, scratch=tmp_path, handout=_build_handout(request, signer, access)
            )
    finally:
        remove_project(docker_client, settings.project_name)
    log = (tmp_path / "build.log").read_text()
    assert output.publish_error is None, log[-6000:]
    assert output.meta["installed.txt"].split() == ["sf-hello", "1.0"]
    objects = sorted(s3_server.objects(bucket))
    assert [name for name in objects if name.startswith("spack/v3/manifests/spec/sf-hello/")], objects
    assert f"spack/v3/manifests/key/{signer.fingerprint}.key.manifest.json" in objects
    assert "spack/v3/manifests/index/index.manifest.json" in objects
    assert "4 secret file(s) on the container's tmpfs /run/slurm-factory-secrets for " in log
    assert key.passphrase not in log and s3_server.secret_access_key not in log
    report_measurement(f"stand-in build + signed push to S3 in the toolchain image: {monitor.durations}")
