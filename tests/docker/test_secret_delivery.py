"""Real Docker: how a signing key reaches a Spack build container — on a tmpfs, through a command's standard input,
never in argv, the environment, the container's writable layer or its inspect data — and how the build script
then runs as a streamed exec."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import PurePosixPath

import docker
import pytest

from slurm_factory.docker_engine import DockerSession
from slurm_factory.engines.container import IDLE_COMMAND, SECRETS_TMPFS
from slurm_factory.plan import layout
from tests.conftest import BASE_IMAGE

pytestmark = pytest.mark.docker


def test_secret_lands_on_the_tmpfs_intact_private_and_nowhere_else(
    project_cleanup: str, docker_client: docker.DockerClient
) -> None:
    secret = os.urandom(48_000) + b"\n-----END PGP PRIVATE KEY BLOCK-----\n"
    target = layout.SECRETS / "signing-key.asc"
    session = DockerSession(project_cleanup)
    with session.container(
        BASE_IMAGE, IDLE_COMMAND, role="secrets", extra={"tmpfs": {str(layout.SECRETS): SECRETS_TMPFS}}
    ) as box:
        box.start()
        box.write_secret(target, secret)
        code, digest = box.run(["sha256sum", str(target)])
        assert code == 0
        assert digest.split()[0] == hashlib.sha256(secret).hexdigest()
        assert box.run(["stat", "-c", "%a", str(target)])[1].strip() == "600"
        assert box.run(["stat", "-c", "%a", str(layout.SECRETS)])[1].strip() == "700"
        assert "tmpfs" in box.run(["sh", "-c", f"grep ' {layout.SECRETS} ' /proc/mounts"])[1]
        container = docker_client.containers.get(box.id)
        changed = [entry["Path"] for entry in container.diff() or []]
        # the mount point itself is created in the writable layer; nothing below it may be
        assert not [path for path in changed if path.startswith(f"{layout.SECRETS}/")], changed
        inspected = json.dumps(container.attrs).encode()
        assert secret[:16] not in inspected and secret[1000:1016] not in inspected


def test_build_script_runs_as_a_streamed_exec_with_its_exit_code(project_cleanup: str) -> None:
    session = DockerSession(project_cleanup)
    with session.container(BASE_IMAGE, IDLE_COMMAND, role="exec") as box:
        box.start()
        lines: list[str] = []
        code = box.exec_streaming(["sh", "-c", "echo one; echo two >&2; printf three; exit 3"], lines.append,
                                  environment={"UNUSED": "1"})  # fmt: skip
        assert code == 3
        assert sorted(lines) == ["one", "three", "two"]  # stdout and stderr are separate streams


def test_writing_a_secret_to_a_missing_directory_fails_loudly(project_cleanup: str) -> None:
    session = DockerSession(project_cleanup)
    with session.container(BASE_IMAGE, IDLE_COMMAND, role="secrets") as box:
        box.start()
        with pytest.raises(Exception) as raised:
            box.write_secret(PurePosixPath("/no/such/dir/key"), b"x")
        assert "failed" in str(raised.value)
