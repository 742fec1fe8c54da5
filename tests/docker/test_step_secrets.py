"""Real Docker: a build container's steps and their secrets. The build step sees only what it needs (credentials to
read a buildcache), the signing key arrives only for the publish step, the tmpfs is empty after each step, and
S3 credentials handed over as files work for boto3 inside a container exactly as Spack's s3 code calls it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from secrets import token_hex

import docker
import pytest

from slurm_factory.config import Settings
from slurm_factory.docker_engine import DockerSession
from slurm_factory.engines.container import IDLE_COMMAND, SECRETS_TMPFS, SecretHandout, run_build
from slurm_factory.exceptions import BuildError
from slurm_factory.plan import BuildPlan, ContainerSpec, ImageSpec, PlanFile, layout, make_plan
from slurm_factory.progress import BuildMonitor, SilentDisplay
from slurm_factory.request import make_request
from slurm_factory.s3 import S3Access
from tests.conftest import BASE_IMAGE
from tests.s3server import S3Server

pytestmark = pytest.mark.docker

OUT = PurePosixPath("/out")
META = PurePosixPath("/meta")
# Each step prints which secret files it saw (the log keeps it); the build step also leaves an install tree.
RECORD = (
    "mkdir -p {meta} {out} && echo {step}-saw: $(ls -A {secrets}) $(find {secrets} -type f | wc -l)"
    " && echo built > {meta}/{step}"
)


def _step(step: str, exit_code: int = 0) -> tuple[str, ...]:
    script = RECORD.format(meta=META, out=OUT, secrets=layout.SECRETS, step=step) + f"; exit {exit_code}"
    return ("sh", "-c", script)


def _plan(settings: Settings, publish_exit: int = 0) -> BuildPlan:
    """A real plan whose image and container steps are replaced by small recording commands."""
    plan = make_plan(make_request(slurm_version="24.11.5", toolchain="trixie", engine="native"), settings)
    repository, tag = BASE_IMAGE.split(":")
    container = ContainerSpec(
        command=_step("build"),
        mounts=(),
        environment={},
        install_prefix=OUT,
        meta_dir=META,
        publish_command=_step("publish", publish_exit),
    )
    return dataclasses.replace(plan, image=ImageSpec("", repository, tag), container=container)


def test_the_signing_key_reaches_only_the_publish_step_and_no_secret_outlives_its_step(
    settings: Settings, project_cleanup: str, tmp_path: Path
) -> None:
    key, passphrase = token_hex(32).encode(), token_hex(16).encode()
    handout = SecretHandout(
        build=lambda: {"read-credentials": b"[default]\nread\n"},
        publish=lambda: {"signing-key.asc": key, "passphrase": passphrase, "write-credentials": b"[default]\nw\n"},
    )
    with BuildMonitor(tmp_path / "steps.log", SilentDisplay()) as monitor:
        output = run_build(_plan(settings), DockerSession(project_cleanup), monitor, scratch=tmp_path, handout=handout)
    log = (tmp_path / "steps.log").read_text()
    saw = {line.split(":")[0]: line.split()[1:] for line in log.splitlines() if "-saw:" in line}
    assert saw["build-saw"] == ["read-credentials", "1"]
    # the build step's file is gone before the publish step starts
    assert sorted(saw["publish-saw"]) == ["3", "passphrase", "signing-key.asc", "write-credentials"]
    assert output.publish_error is None and output.meta == {"build": "built\n"}
    assert "3 secret file(s) on the container's tmpfs" in log
    assert key.decode() not in log and passphrase.decode() not in log


def test_a_failing_publish_step_keeps_the_build_and_says_it_was_the_publish_step(
    settings: Settings, project_cleanup: str, tmp_path: Path
) -> None:
    with BuildMonitor(tmp_path / "steps.log", SilentDisplay()) as monitor:
        output = run_build(_plan(settings, publish_exit=7), DockerSession(project_cleanup), monitor, scratch=tmp_path)
    assert output.publish_error is not None
    assert output.publish_error.message == "the publish step of slurm-24.11.5-trixie failed (exit code 7)"
    assert output.tree_tar.stat().st_size > 0 and output.meta == {"build": "built\n"}


def test_a_failing_build_step_raises_before_anything_is_collected(
    settings: Settings, project_cleanup: str, tmp_path: Path
) -> None:
    plan = _plan(settings)
    failing = dataclasses.replace(plan, container=dataclasses.replace(plan.container, command=_step("build", 5)))
    with BuildMonitor(tmp_path / "steps.log", SilentDisplay()) as monitor, pytest.raises(BuildError) as raised:
        run_build(failing, DockerSession(project_cleanup), monitor, scratch=tmp_path)
    assert raised.value.message == "the build of slurm-24.11.5-trixie failed (exit code 5)"
    assert not (tmp_path / "tree.tar").exists()


BOTO3_IMAGE_DOCKERFILE = f"""FROM {BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends python3-boto3 && rm -rf /var/lib/apt/lists/*
"""
# What spack.util.s3 does with a mirror: boto3.Session() with no explicit key, anonymous when it finds none, the
# mirror's endpoint_url for the client.
SPACK_LIKE_PUSH = PlanFile(
    """import sys
import boto3
from botocore import UNSIGNED
from botocore.client import Config

endpoint, bucket, key = sys.argv[1:4]
session = boto3.Session()
arguments = {"endpoint_url": endpoint}
if not session.get_credentials():
    arguments["config"] = Config(signature_version=UNSIGNED)
session.client("s3", **arguments).put_object(Bucket=bucket, Key=key, Body=b"pushed from the container")
print("pushed", key, "region", session.region_name)
"""
)


@pytest.fixture(scope="module")
def boto3_image(docker_client: docker.DockerClient) -> Iterator[str]:
    """debian:trixie with Debian's python3-boto3: a container Python whose boto3 reads credentials files."""
    session = DockerSession("sf-test-boto3")
    reference = "sf-test-boto3/boto3:trixie"
    session.build_image(BOTO3_IMAGE_DOCKERFILE, reference, session.labels("test"), lambda line: None)
    yield reference
    docker_client.images.remove(reference, force=True)


def test_s3_credentials_as_tmpfs_files_let_boto3_in_the_container_push_and_leave_no_trace(
    monkeypatch: pytest.MonkeyPatch,
    s3_server: S3Server,
    settings: Settings,
    project_cleanup: str,
    docker_client: docker.DockerClient,
    boto3_image: str,
) -> None:
    bucket = s3_server.new_bucket()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    request = make_request(
        toolchain="trixie", publish="slurm", signing_key="0x5EED1234ABCD5678", publish_url=f"s3://{bucket}/spack"
    )
    environment = make_plan(request, settings).container.environment  # what a Spack build container gets
    with S3Access(s3_server.endpoint, required=True, purpose="--publish-url") as access:
        files = access.credential_files()
    session = DockerSession(project_cleanup)
    script = PurePosixPath("/opt/push.py")
    with session.container(
        boto3_image, IDLE_COMMAND, role="s3", environment=environment,
        extra={"tmpfs": {str(layout.SECRETS): SECRETS_TMPFS}},
    ) as box:  # fmt: skip
        box.put_files({script: SPACK_LIKE_PUSH})
        box.start()
        for name, data in files.items():
            box.write_secret(layout.SECRETS / name, data)
        lines: list[str] = []
        code = box.exec_streaming(["python3", str(script), s3_server.endpoint, bucket, "spack/probe"], lines.append)
        assert code == 0, lines
        assert lines[-1] == "pushed spack/probe region us-east-1"
        box.clear_directory(layout.SECRETS)
        assert box.run(["ls", "-A", str(layout.SECRETS)]) == (0, "")
        container = docker_client.containers.get(box.id)
        inspected = json.dumps(container.attrs)
        changed = [entry["Path"] for entry in container.diff() or []]
    assert s3_server.objects(bucket) == {"spack/probe": b"pushed from the container"}
    assert s3_server.secret_access_key not in inspected
    assert not [path for path in changed if path.startswith(f"{layout.SECRETS}/")]
