"""DockerSession and RunningContainer against the real Docker engine.

Every resource is created under the unique project of `project_cleanup`, which removes it afterwards; the few
tests that could leave something else behind clean up in `finally`.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path, PurePosixPath

import docker
import docker.errors
import pytest

from slurm_factory.docker_engine import (
    PROJECT_LABEL,
    ROLE_LABEL,
    DockerSession,
    RunningContainer,
    ensure_host_dirs,
)
from slurm_factory.exceptions import EXIT_FAILURE, DockerError
from slurm_factory.plan.model import Mount, PlanFile

pytestmark = pytest.mark.docker

BASE_IMAGE = "debian:trixie"


@pytest.fixture
def session(project_cleanup: str, docker_client: docker.DockerClient) -> DockerSession:
    return DockerSession(project_cleanup, client=docker_client)


def _gone(client: docker.DockerClient, container_id: str) -> bool:
    try:
        client.containers.get(container_id)
    except docker.errors.NotFound:
        return True
    return False


def _run(container: RunningContainer) -> tuple[int, list[str]]:
    lines: list[str] = []
    container.start()
    code = container.stream_output(lines.append)
    return code, lines


# --- an unreachable engine -------------------------------------------------------------------------------------


def test_unreachable_engine_from_docker_host_raises_docker_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    with pytest.raises(DockerError) as caught:
        DockerSession("sf-unreachable")
    assert caught.value.exit_code == EXIT_FAILURE == 1
    assert "cannot reach the Docker engine" in caught.value.message
    assert caught.value.hint


def test_unreachable_engine_with_client_passed_in_raises_docker_error() -> None:
    # An unpinned DockerClient probes the engine in its constructor, so the only way to hand DockerSession a
    # client for an unreachable engine is to pin the API version.
    client = docker.DockerClient(base_url="unix:///nonexistent/docker.sock", version="1.41")
    try:
        with pytest.raises(DockerError) as caught:
            DockerSession("sf-unreachable", client=client)
        assert caught.value.exit_code == 1
    finally:
        client.close()


# --- images ----------------------------------------------------------------------------------------------------


def test_build_image_streams_lines_labels_the_image_and_image_exists(
    session: DockerSession, project_cleanup: str, docker_client: docker.DockerClient
) -> None:
    reference = f"{project_cleanup}/probe:ok"
    assert not session.image_exists(reference)
    lines: list[str] = []

    session.build_image(
        f"FROM {BASE_IMAGE}\nRUN echo hello > /hello\n",
        reference,
        labels=session.labels("toolchain", extra="yes"),
        on_line=lines.append,
    )

    assert any("RUN echo hello > /hello" in line for line in lines), lines
    assert all(line == line.rstrip() and line.strip() for line in lines)
    assert session.image_exists(reference)
    image = docker_client.images.get(reference)
    assert image.labels[PROJECT_LABEL] == project_cleanup
    assert image.labels[ROLE_LABEL] == "toolchain"
    assert image.labels["extra"] == "yes"
    # The RUN step really ran inside the image.
    with session.container(reference, ["cat", "/hello"], role="probe") as container:
        assert _run(container) == (0, ["hello"])


def test_build_image_failure_raises_and_streams_the_failing_step(session: DockerSession, project_cleanup: str) -> None:
    reference = f"{project_cleanup}/probe:broken"
    lines: list[str] = []

    with pytest.raises(DockerError) as caught:
        session.build_image(
            f"FROM {BASE_IMAGE}\nRUN false\n", reference, labels=session.labels("toolchain"), on_line=lines.append
        )

    assert caught.value.exit_code == 1
    assert reference in caught.value.message
    assert any("RUN false" in line for line in lines), lines
    assert "non-zero code" in lines[-1]
    assert not session.image_exists(reference)


def test_image_exists_is_false_for_an_unknown_reference(session: DockerSession, project_cleanup: str) -> None:
    assert not session.image_exists(f"{project_cleanup}/never-built:1")
    assert session.image_exists(BASE_IMAGE)


# --- containers: lifecycle -------------------------------------------------------------------------------------


def test_container_is_labelled_named_and_removed_after_the_block(
    session: DockerSession, project_cleanup: str, docker_client: docker.DockerClient
) -> None:
    with session.container(BASE_IMAGE, ["true"], role="probe", labels={"extra": "x"}) as container:
        inspected = docker_client.containers.get(container.id)
        assert inspected.name == container.name
        assert container.name.startswith(f"{project_cleanup}-probe-")
        assert inspected.labels[PROJECT_LABEL] == project_cleanup
        assert inspected.labels[ROLE_LABEL] == "probe"
        assert inspected.labels["extra"] == "x"
        assert inspected.status == "created"
        assert inspected.attrs["HostConfig"]["NetworkMode"] == "host"
        container_id = container.id
    assert _gone(docker_client, container_id)


def test_container_is_removed_when_the_block_raises(session: DockerSession, docker_client: docker.DockerClient) -> None:
    ids: list[str] = []
    with (
        pytest.raises(RuntimeError, match="boom inside the block"),
        session.container(BASE_IMAGE, ["sleep", "300"], role="probe") as container,
    ):
        ids.append(container.id)
        container.start()  # a running container is removed too
        raise RuntimeError("boom inside the block")
    assert len(ids) == 1
    assert _gone(docker_client, ids[0])


def test_container_from_a_missing_image_raises_docker_error_and_leaves_nothing(
    session: DockerSession, project_cleanup: str, docker_client: docker.DockerClient
) -> None:
    with (
        pytest.raises(DockerError) as caught,
        session.container(f"{project_cleanup}/never-built:1", ["true"], role="probe"),
    ):
        pytest.fail("the block must not run")
    assert caught.value.exit_code == 1
    label: dict[str, str | list[str] | bool] = {"label": f"{PROJECT_LABEL}={project_cleanup}"}
    assert docker_client.containers.list(all=True, filters=label) == []


# --- containers: files, output, exit codes ---------------------------------------------------------------------


@pytest.mark.parametrize("exit_code", [0, 7])
def test_put_files_start_and_stream_output(session: DockerSession, exit_code: int) -> None:
    script = (
        "#!/bin/sh\n"
        "echo 'out one'\n"
        "echo 'err two' >&2\n"
        "cat /opt/probe/data/payload.txt\n"
        "stat -c '%a %n' /opt/probe/run.sh /opt/probe/data/payload.txt\n"
        f"exit {exit_code}\n"
    )
    modes = ["755 /opt/probe/run.sh", "644 /opt/probe/data/payload.txt"]
    files = {
        PurePosixPath("/opt/probe/run.sh"): PlanFile(script, mode=0o755),
        PurePosixPath("/opt/probe/data/payload.txt"): PlanFile("payload line ü\n"),
    }
    with session.container(BASE_IMAGE, ["/opt/probe/run.sh"], role="probe") as container:
        container.put_files(files)
        code, lines = _run(container)

    assert code == exit_code
    # stdout and stderr are separate pipes, so only the order within stdout is guaranteed.
    assert sorted(lines) == sorted(["out one", "err two", "payload line ü", *modes])
    assert [line for line in lines if line != "err two"] == ["out one", "payload line ü", *modes]


def test_environment_variables_reach_the_command(session: DockerSession) -> None:
    environment = {"SF_PROBE": "value with spaces", "SF_OTHER": "2"}
    command = ["sh", "-c", 'echo "$SF_PROBE"; echo "other=$SF_OTHER"']
    with session.container(BASE_IMAGE, command, role="probe", environment=environment) as container:
        assert _run(container) == (0, ["value with spaces", "other=2"])


def test_hostname_is_set_on_the_host_network(session: DockerSession) -> None:
    with session.container(BASE_IMAGE, ["hostname"], role="probe", hostname="sf-probe-host") as container:
        assert _run(container) == (0, ["sf-probe-host"])


def test_run_executes_in_the_running_container(session: DockerSession) -> None:
    with session.container(BASE_IMAGE, ["sleep", "300"], role="probe") as container:
        container.start()
        assert container.run(["sh", "-c", "echo hi; exit 4"]) == (4, "hi\n")
        assert container.run(["id", "-un"], user="nobody") == (0, "nobody\n")


def test_copy_out_of_a_directory_gives_a_tar_stream(session: DockerSession) -> None:
    command = ["sh", "-c", "mkdir -p /out/sub && echo a > /out/a.txt && echo b > /out/sub/b.txt"]
    with session.container(BASE_IMAGE, command, role="probe") as container:
        assert _run(container) == (0, [])
        buffer = io.BytesIO()
        container.copy_out(PurePosixPath("/out"), buffer)

    buffer.seek(0)
    with tarfile.open(fileobj=buffer, mode="r") as archive:
        names = set(archive.getnames())
        assert {"out", "out/a.txt", "out/sub", "out/sub/b.txt"} <= names
        a = archive.extractfile("out/a.txt")
        b = archive.extractfile("out/sub/b.txt")
        assert a is not None and b is not None
        assert a.read() == b"a\n"
        assert b.read() == b"b\n"


def test_copy_out_of_a_missing_path_raises_docker_error(session: DockerSession) -> None:
    with (
        session.container(BASE_IMAGE, ["true"], role="probe") as container,
        pytest.raises(DockerError) as caught,
    ):
        container.copy_out(PurePosixPath("/does/not/exist"), io.BytesIO())
    assert caught.value.exit_code == 1
    assert "/does/not/exist" in caught.value.message


def test_read_text_files_returns_name_to_content(session: DockerSession) -> None:
    files = {
        PurePosixPath("/meta/manifest.json"): PlanFile('{"slurm": "24.11.5"}\n'),
        PurePosixPath("/meta/sha256"): PlanFile("abc123\n"),
    }
    with session.container(BASE_IMAGE, ["true"], role="probe") as container:
        container.put_files(files)
        assert container.read_text_files(PurePosixPath("/meta")) == {
            "manifest.json": '{"slurm": "24.11.5"}\n',
            "sha256": "abc123\n",
        }


def test_read_text_files_ignores_subdirectories(session: DockerSession) -> None:
    files = {
        PurePosixPath("/meta/version"): PlanFile("top\n"),
        PurePosixPath("/meta/nested/version"): PlanFile("nested\n"),
        PurePosixPath("/meta/nested/other"): PlanFile("other\n"),
    }
    with session.container(BASE_IMAGE, ["true"], role="probe") as container:
        container.put_files(files)
        assert container.read_text_files(PurePosixPath("/meta")) == {"version": "top\n"}


# --- containers: bind mounts -----------------------------------------------------------------------------------


def test_bind_mounts_are_visible_and_read_only_ones_refuse_writes(session: DockerSession, tmp_path: Path) -> None:
    read_only = tmp_path / "ro"
    writable = tmp_path / "rw" / "deep"
    mounts = (
        Mount(host=read_only, container=PurePosixPath("/ro"), read_only=True),
        Mount(host=writable, container=PurePosixPath("/rw")),
    )
    ensure_host_dirs(mounts)  # the sources do not exist yet
    assert read_only.is_dir() and writable.is_dir()
    (read_only / "in.txt").write_text("from the host\n")
    script = (
        "cat /ro/in.txt; "
        "if touch /ro/new 2>/dev/null; then echo ro-writable; else echo ro-refused; fi; "
        "echo written > /rw/out.txt && echo rw-ok"
    )
    with session.container(BASE_IMAGE, ["sh", "-c", script], role="probe", mounts=mounts) as container:
        assert _run(container) == (0, ["from the host", "ro-refused", "rw-ok"])

    assert not (read_only / "new").exists()
    assert (writable / "out.txt").read_text() == "written\n"


def test_stream_output_keeps_a_final_line_without_newline(session: DockerSession) -> None:
    # dockerd 20.10 sometimes ends a followed log stream before the last fragment; it must still be delivered.
    for attempt in range(6):
        with session.container(BASE_IMAGE, ["printf", f"first\\nlast-{attempt}"], role="tail") as container:
            lines: list[str] = []
            container.start()
            assert container.stream_output(lines.append) == 0
        assert lines == ["first", f"last-{attempt}"]
