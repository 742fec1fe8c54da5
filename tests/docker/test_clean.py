"""`clean` against the real Docker engine: it removes only this project's stopped containers (and with --full its
unused images), never a running container and never anything without this project's label.

This project's resources are removed by `project_cleanup`; the foreign ones (another project's, unlabelled) by
the `foreign` fixture, whatever happened.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator

import docker
import docker.errors
import pytest
from docker.models.containers import Container
from typer.testing import CliRunner

from slurm_factory.cli import app
from slurm_factory.docker_engine import OWNER_LABEL, PROJECT_LABEL, DockerSession

pytestmark = pytest.mark.docker

BASE_IMAGE = "debian:trixie"


class Foreign:
    """Containers and images this test creates outside its own project; removed after the test."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.project = f"sf-test-other-{uuid.uuid4().hex[:8]}"
        self.containers: list[str] = []

    def track(self, container: Container) -> Container:
        self.containers.append(str(container.id))
        return container

    def remove_all(self) -> None:
        for container_id in self.containers:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.containers.get(container_id).remove(force=True)
        label: dict[str, str | list[str] | bool] = {"label": f"{PROJECT_LABEL}={self.project}"}
        for container in self.client.containers.list(all=True, filters=label):
            container.remove(force=True)
        for image in self.client.images.list(filters=label):
            self.client.images.remove(str(image.id), force=True)


@pytest.fixture
def foreign(project_cleanup: str, docker_client: docker.DockerClient) -> Iterator[Foreign]:
    # Depends on project_cleanup so that it is torn down first: a foreign container may use one of our images.
    tracker = Foreign(docker_client)
    try:
        yield tracker
    finally:
        tracker.remove_all()


def _labels(project: str) -> dict[str, str]:
    return {PROJECT_LABEL: project, "org.slurm-factory.role": "test"}


def _created(client: docker.DockerClient, name: str, labels: dict[str, str], image: str = BASE_IMAGE) -> Container:
    return client.containers.create(image, ["true"], name=name, labels=labels, network_mode="host")


def _exited(client: docker.DockerClient, name: str, labels: dict[str, str], image: str = BASE_IMAGE) -> Container:
    container = _created(client, name, labels, image)
    container.start()
    assert container.wait(timeout=30)["StatusCode"] == 0
    container.reload()
    assert container.status == "exited"
    return container


def _running(client: docker.DockerClient, name: str, labels: dict[str, str], image: str = BASE_IMAGE) -> Container:
    container = client.containers.run(
        image, ["sleep", "300"], name=name, labels=labels, network_mode="host", detach=True
    )
    container.reload()
    assert container.status == "running"
    return container


def _status(client: docker.DockerClient, container: Container) -> str | None:
    try:
        return str(client.containers.get(str(container.id)).status)
    except docker.errors.NotFound:
        return None


def _build(session: DockerSession, reference: str, marker: str) -> None:
    session.build_image(
        f"FROM {BASE_IMAGE}\nLABEL org.slurm-factory.test={marker}\n",
        reference,
        labels=session.labels("toolchain"),
        on_line=lambda _line: None,
    )


def _suffix() -> str:
    return uuid.uuid4().hex[:8]


def test_clean_removes_only_this_projects_stopped_containers(
    project_cleanup: str, foreign: Foreign, docker_client: docker.DockerClient
) -> None:
    project = project_cleanup
    created = _created(docker_client, f"{project}-created-{_suffix()}", _labels(project))
    exited = _exited(docker_client, f"{project}-exited-{_suffix()}", _labels(project))
    running = _running(docker_client, f"{project}-running-{_suffix()}", _labels(project))
    # Foreign containers; their names even start with our project name: clean must go by label, not by name.
    other = foreign.track(_exited(docker_client, f"{project}-other-{_suffix()}", _labels(foreign.project)))
    unlabelled = foreign.track(_exited(docker_client, f"{project}-unlabelled-{_suffix()}", {}))

    report = DockerSession(project, client=docker_client).clean()

    assert sorted(report.containers) == sorted([str(created.name), str(exited.name)])
    assert report.kept == [f"container {running.name} (running)"]
    assert report.images == [] and report.volumes == []
    assert _status(docker_client, created) is None
    assert _status(docker_client, exited) is None
    assert _status(docker_client, running) == "running"
    assert _status(docker_client, other) == "exited"
    assert _status(docker_client, unlabelled) == "exited"

    # A second run finds nothing more to remove.
    again = DockerSession(project, client=docker_client).clean()
    assert again.containers == []
    assert again.kept == [f"container {running.name} (running)"]


def test_clean_full_removes_unused_images_and_keeps_the_one_a_running_container_uses(
    project_cleanup: str, foreign: Foreign, docker_client: docker.DockerClient
) -> None:
    project = project_cleanup
    session = DockerSession(project, client=docker_client)
    other_session = DockerSession(foreign.project, client=docker_client)
    unused = f"{project}/unused:1"
    in_use = f"{project}/in-use:1"
    used_by_foreign = f"{project}/used-by-foreign:1"
    other_image = f"{foreign.project}/kept:1"
    _build(session, unused, "unused")
    _build(session, in_use, "in-use")
    _build(session, used_by_foreign, "used-by-foreign")
    _build(other_session, other_image, "other")
    # A stopped container of ours uses the unused image: clean removes the container first, then the image.
    stopped = _exited(docker_client, f"{project}-stopped-{_suffix()}", _labels(project), image=unused)
    running = _running(docker_client, f"{project}-running-{_suffix()}", _labels(project), image=in_use)
    # A stopped container of another project pins one of our images: neither may be removed. (It must carry a
    # label of its own: a container without labels inherits the image's, project label included.)
    pinning = foreign.track(
        _exited(docker_client, f"{foreign.project}-pinning-{_suffix()}", _labels(foreign.project), used_by_foreign)
    )

    report = session.clean(full=True)

    assert report.containers == [stopped.name]
    assert report.images == [unused]
    assert f"container {running.name} (running)" in report.kept
    assert f"image {in_use} (used by a running container)" in report.kept
    assert any(line.startswith(f"image {used_by_foreign} (") for line in report.kept), report.kept
    assert len(report.kept) == 3
    assert not session.image_exists(unused)
    assert session.image_exists(in_use)
    assert session.image_exists(used_by_foreign)
    assert session.image_exists(other_image)
    assert session.image_exists(BASE_IMAGE)
    assert _status(docker_client, running) == "running"
    assert _status(docker_client, pinning) == "exited"


# --- the CLI ---------------------------------------------------------------------------------------------------


def test_cli_clean_prints_what_it_removed_and_kept(project_cleanup: str, docker_client: docker.DockerClient) -> None:
    project = project_cleanup
    stopped = _exited(docker_client, f"{project}-stopped-{_suffix()}", _labels(project))
    running = _running(docker_client, f"{project}-running-{_suffix()}", _labels(project))

    result = CliRunner().invoke(app, ["--project-name", project, "clean"])

    assert result.exit_code == 0, result.output
    assert f"removed container {stopped.name}" in result.output
    assert f"kept    container {running.name} (running)" in result.output
    assert _status(docker_client, stopped) is None
    assert _status(docker_client, running) == "running"


def test_cli_clean_full_removes_images(project_cleanup: str, docker_client: docker.DockerClient) -> None:
    session = DockerSession(project_cleanup, client=docker_client)
    reference = f"{project_cleanup}/unused:1"
    _build(session, reference, "cli")

    result = CliRunner().invoke(app, ["--project-name", project_cleanup, "clean", "--full"])

    assert result.exit_code == 0, result.output
    assert f"removed image {reference}" in result.output
    assert not session.image_exists(reference)


def test_cli_clean_reads_the_project_from_the_environment(
    project_cleanup: str, docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped = _created(docker_client, f"{project_cleanup}-created-{_suffix()}", _labels(project_cleanup))
    monkeypatch.setenv("IF_PROJECT_NAME", project_cleanup)

    result = CliRunner().invoke(app, ["clean"])

    assert result.exit_code == 0, result.output
    assert f"removed container {stopped.name}" in result.output
    assert _status(docker_client, stopped) is None


def test_cli_clean_with_nothing_to_remove(project_cleanup: str) -> None:
    result = CliRunner().invoke(app, ["--project-name", project_cleanup, "clean"])

    assert result.exit_code == 0, result.output
    assert f"nothing to remove for project {project_cleanup}" in result.output
    assert "removed" not in result.output


def test_cli_clean_on_an_unreachable_engine_exits_1(project_cleanup: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)

    result = CliRunner().invoke(app, ["--project-name", project_cleanup, "clean"])

    assert result.exit_code == 1, result.output
    assert "cannot reach the Docker engine" in result.output
    assert "Traceback" not in result.output


def test_clean_keeps_an_exited_container_whose_owner_process_still_runs(
    project_cleanup: str, docker_client: docker.DockerClient
) -> None:
    # A build container that has exited but whose results are still being copied out belongs to a running build.
    session = DockerSession(project_cleanup)
    with session.container(BASE_IMAGE, ["true"], role="build") as build:
        build.start()
        assert build.stream_output(lambda line: None) == 0
        report = DockerSession(project_cleanup).clean()
        assert report.containers == []
        assert any(build.name in kept and "in use by" in kept for kept in report.kept)
        assert _status(docker_client, docker_client.containers.get(build.id)) == "exited"


def test_clean_removes_an_exited_container_whose_owner_is_gone(
    project_cleanup: str, docker_client: docker.DockerClient
) -> None:
    labels = {**_labels(project_cleanup), OWNER_LABEL: f"{socket.gethostname()}:999999999"}
    orphan = _exited(docker_client, f"{project_cleanup}-orphan", labels)
    report = DockerSession(project_cleanup).clean()
    assert report.containers == [orphan.name]
    assert _status(docker_client, orphan) is None
