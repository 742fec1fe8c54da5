"""The only module that talks to the Docker Engine API (docker SDK).

Every image, container and volume it creates carries the project label, so two projects never touch each other's
resources and `clean` finds exactly ours. A container is a context manager that always removes itself, also on
error or Ctrl-C (a signal that arrives while it is being removed takes effect once it is gone). Builds and build
containers use the host network (no default bridge exists on the build machines); containers that run an untrusted
artifact's programs get no network (`NO_NETWORK`) or an internal one.
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

import docker
import docker.errors
import docker.types
import requests
import requests.exceptions
from docker.models.containers import Container

from slurm_factory.exceptions import ConfigurationError, DockerError
from slurm_factory.plan.model import Mount, PlanFile

PROJECT_LABEL = "org.slurm-factory.project"
ROLE_LABEL = "org.slurm-factory.role"
BUILD_ID_LABEL = "org.slurm-factory.build-id"
# `<host>:<pid>` of the slurm-factory process that owns a container: `clean` never removes one whose owner still
# runs, even between the build's exit and the copy-out of its results.
OWNER_LABEL = "org.slurm-factory.owner"
NETWORK_MODE = "host"
# No network interface but loopback: for containers that run an untrusted artifact's programs and need no peer.
NO_NETWORK = "none"
# An internal network has no outside route only when dockerd installs its iptables rules; with --iptables=false the
# host's bridge address is still a gateway (and the host's own services answer on it). Without an IPv4 address on
# the bridge there is no gateway at all: the containers reach each other and nothing else.
_NO_GATEWAY = {"com.docker.network.bridge.inhibit_ipv4": "true"}
STOPPED_STATES = frozenset({"created", "exited", "dead"})

LineSink = Callable[[str], None]
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# The SDK raises its own errors for API answers, but plain `requests` errors when the engine goes away.
DOCKER_FAILURES = (docker.errors.DockerException, requests.exceptions.RequestException)
# The signals that interrupt a run: Ctrl-C, and SIGTERM and SIGHUP, which cli.main turns into KeyboardInterrupt.
INTERRUPTS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _docker_failure(action: str, error: Exception) -> DockerError:
    explanation = getattr(error, "explanation", None) or str(error)
    if isinstance(error, requests.exceptions.ConnectionError):  # the engine went away mid-operation
        return DockerError(
            f"lost the Docker engine while {action}: {explanation}",
            hint="start the engine again; the next build removes what this one left",
        )
    return DockerError(f"{action}: {explanation}")


def _add_plan_files(archive: tarfile.TarFile, files: dict[PurePosixPath, PlanFile]) -> None:
    for path, plan_file in sorted(files.items()):
        data = plan_file.content.encode()
        info = tarfile.TarInfo(str(path).lstrip("/"))
        info.size = len(data)
        info.mode = plan_file.mode
        info.mtime = 0
        archive.addfile(info, io.BytesIO(data))


def tar_of_files(files: dict[PurePosixPath, PlanFile]) -> bytes:
    """An uncompressed tar (as put_archive and the build API take it) holding the given files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        _add_plan_files(archive, files)
    return buffer.getvalue()


def _relay_build_output(chunk: dict[str, Any], reference: str, on_line: LineSink) -> None:
    """One decoded chunk of the build API's stream: output lines go to `on_line`, an error raises."""
    if "error" in chunk:
        detail = str(chunk.get("errorDetail", {}).get("message", chunk["error"]))
        on_line(detail.rstrip())
        raise DockerError(f"building image {reference} failed: {detail.strip()}")
    text = _ANSI_ESCAPE.sub("", str(chunk.get("stream") or chunk.get("status") or ""))
    for line in text.splitlines():
        if line.strip():
            on_line(line.rstrip())


def _without_git(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Leave version-control metadata out of build contexts (a Spack checkout's .git is hundreds of MB)."""
    return None if "/.git" in f"/{info.name}" else info


def _tar_of_blob(path: PurePosixPath, data: bytes, mode: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(str(path).lstrip("/"))
        info.size = len(data)
        info.mode = mode
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """An interrupting signal that arrives inside the block takes effect (its handler runs) when the block ends, so
    that a removal is never stopped half-way: not by a second Ctrl-C, nor by the burst of SIGTERMs a matrix cell
    gets when its multi-threaded parent is killed (PR_SET_PDEATHSIG fires each time the cell is handed from a dying
    thread of the parent to the next). Python runs signal handlers in the main thread only: elsewhere there is
    nothing to defer."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous: dict[signal.Signals, Any] = {}
    for signum in INTERRUPTS:
        if signal.getsignal(signum) is not None:  # None: a handler installed outside Python, left alone
            previous[signum] = signal.signal(signum, lambda number, _frame: arrived.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for number in dict.fromkeys(arrived):  # once each: a burst of one signal is one interruption
            signal.raise_signal(number)


@dataclass
class CleanReport:
    """What `clean` removed and what it left alone (and why)."""

    containers: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


class DockerSession:
    """A connection to the Docker engine, scoped to one project's labels and names."""

    # Containers this process created (each is removed when its block ends): what an interrupted run reports.
    containers_created = 0

    def __init__(self, project_name: str, client: docker.DockerClient | None = None, *, timeout: int = 600) -> None:
        self.project_name = project_name
        try:
            self.client = client or docker.from_env(timeout=timeout)
            self.client.ping()
        except DOCKER_FAILURES as error:
            raise DockerError(
                f"cannot reach the Docker engine: {error}",
                hint="start dockerd (or set DOCKER_HOST) and check that this user may use it",
            ) from None

    def labels(self, role: str, **extra: str) -> dict[str, str]:
        return {PROJECT_LABEL: self.project_name, ROLE_LABEL: role, **extra}

    def _project_filter(self) -> dict[str, str | list[str] | bool]:
        return {"label": f"{PROJECT_LABEL}={self.project_name}"}

    def image_exists(self, reference: str) -> bool:
        try:
            self.client.images.get(reference)
        except docker.errors.ImageNotFound:
            return False
        except DOCKER_FAILURES as error:
            raise _docker_failure(f"inspecting image {reference}", error) from None
        return True

    def image_id(self, reference: str) -> str | None:
        """The id (`sha256:…`) of the local image `reference` names, or None when there is none."""
        try:
            return str(self.client.images.get(reference).id)
        except docker.errors.ImageNotFound:
            return None
        except DOCKER_FAILURES as error:
            raise _docker_failure(f"inspecting image {reference}", error) from None

    def pull_image(self, reference: str) -> str:
        """Pull `reference` from its registry; its id. A registry that cannot be reached is one clear error."""
        try:
            return str(self.client.images.pull(reference).id)
        except DOCKER_FAILURES as error:
            raise DockerError(
                f"cannot pull the base image {reference}: {error}",
                hint="make it available to this engine (docker pull, or docker load/import), or give --base-image",
            ) from None

    def image_labels(self, reference: str) -> dict[str, str]:
        """The labels of the local image `reference` (none when it has none or is not there)."""
        try:
            return dict(self.client.images.get(reference).labels or {})
        except docker.errors.ImageNotFound:
            return {}
        except DOCKER_FAILURES as error:
            raise _docker_failure(f"inspecting image {reference}", error) from None

    def build_image(
        self,
        dockerfile: str,
        reference: str,
        labels: dict[str, str],
        on_line: LineSink,
        *,
        nocache: bool = False,
        context_files: dict[PurePosixPath, PlanFile] | None = None,
        context_paths: dict[str, Path] | None = None,
        target: str | None = None,
    ) -> None:
        """Build an image from the Dockerfile, extra rendered files and host paths (e.g. a Spack checkout) as
        context, streaming the builder's output line by line; `target` stops at that stage."""
        with tempfile.TemporaryFile() as context:
            with tarfile.open(fileobj=context, mode="w") as archive:
                _add_plan_files(archive, {PurePosixPath("Dockerfile"): PlanFile(dockerfile), **(context_files or {})})
                for name, host_path in sorted((context_paths or {}).items()):
                    try:
                        archive.add(host_path, arcname=name, filter=_without_git)
                    except OSError as error:
                        raise ConfigurationError(
                            f"cannot read {error.filename} for the image build: {error.strerror}"
                        ) from None
            context.seek(0)
            try:
                stream = self.client.api.build(
                    fileobj=context,
                    custom_context=True,
                    tag=reference,
                    labels=labels,
                    network_mode=NETWORK_MODE,
                    nocache=nocache,
                    rm=True,
                    forcerm=True,
                    decode=True,
                    target=target,
                )
                for chunk in stream:
                    _relay_build_output(chunk, reference, on_line)
            except DOCKER_FAILURES as error:
                raise _docker_failure(f"building image {reference}", error) from None

    @contextmanager
    def container(
        self,
        image: str,
        command: list[str] | tuple[str, ...],
        role: str,
        *,
        mounts: tuple[Mount, ...] = (),
        environment: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        network: str = NETWORK_MODE,
        hostname: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Iterator[RunningContainer]:
        """Create a (not yet started) container; it is removed on exit, whatever happens inside the block."""
        name = f"{self.project_name}-{role}-{uuid.uuid4().hex[:10]}"
        docker_mounts = [
            docker.types.Mount(target=str(m.container), source=str(m.host), type="bind", read_only=m.read_only)
            for m in mounts
        ]
        if network in (NETWORK_MODE, NO_NETWORK):
            networking: dict[str, Any] = {"network_mode": network}
        else:  # a user-defined network; the hostname doubles as the DNS alias other containers use
            endpoint = self.client.api.create_endpoint_config(aliases=[hostname] if hostname else None)
            networking = {"network": network, "networking_config": {network: endpoint}}
        try:
            created = self.client.containers.create(
                image,
                command=list(command),
                name=name,
                labels=self.labels(role, **{OWNER_LABEL: _owner(), **(labels or {})}),
                environment=environment or {},
                mounts=docker_mounts,
                hostname=hostname,
                detach=True,
                **networking,
                **(extra or {}),
            )
        except DOCKER_FAILURES as error:
            raise _docker_failure(f"creating container from {image}", error) from None
        DockerSession.containers_created += 1
        try:
            yield RunningContainer(created, self.client.api)
        finally:
            with interrupts_deferred():
                try:
                    created.remove(force=True, v=True)
                except docker.errors.NotFound:
                    pass
                except DOCKER_FAILURES as error:
                    raise _docker_failure(f"removing container {name}", error) from None

    @contextmanager
    def network(self, role: str, *, internal: bool = False) -> Iterator[str]:
        """A labelled user-defined bridge network for containers that talk to each other; removed afterwards.
        `internal`: between its containers only — no route to the host or beyond."""
        name = f"{self.project_name}-{role}-{uuid.uuid4().hex[:10]}"
        isolation: dict[str, Any] = {"internal": True, "options": _NO_GATEWAY} if internal else {}
        try:
            created = self.client.networks.create(name, driver="bridge", labels=self.labels(role), **isolation)
        except DOCKER_FAILURES as error:
            raise _docker_failure(f"creating network {name}", error) from None
        try:
            yield name
        finally:
            with interrupts_deferred():
                try:
                    created.remove()
                except docker.errors.NotFound:
                    pass
                except DOCKER_FAILURES as error:
                    raise _docker_failure(f"removing network {name}", error) from None

    def clean(self, *, full: bool = False) -> CleanReport:
        """Remove this project's stopped containers; with `full` also its images and volumes. Running containers
        and anything without the project label are never touched."""
        report = CleanReport()
        try:
            self._remove_orphans(report)
            for network in self.client.networks.list(filters=self._project_filter()):
                network.reload()
                if network.attrs.get("Containers"):
                    report.kept.append(f"network {network.name} (in use)")
                else:
                    network.remove()
                    report.networks.append(str(network.name))
            if full:
                self._clean_images(report)
                for volume in self.client.volumes.list(filters=self._project_filter()):
                    volume.remove()
                    report.volumes.append(volume.name)
        except DOCKER_FAILURES as error:
            raise _docker_failure("cleaning project resources", error) from None
        return report

    def remove_orphaned_containers(self) -> list[str]:
        """Stopped containers of this project whose slurm-factory process is gone — left by a killed process or a
        Docker engine that died mid-build and came back. Every build starts with this; returns their names."""
        report = CleanReport()
        try:
            self._remove_orphans(report)
        except DOCKER_FAILURES as error:
            raise _docker_failure("removing orphaned containers", error) from None
        return report.containers

    def _remove_orphans(self, report: CleanReport) -> None:
        for container in self.client.containers.list(all=True, filters=self._project_filter()):
            owner = container.labels.get(OWNER_LABEL, "")
            if container.status not in STOPPED_STATES:
                report.kept.append(f"container {container.name} ({container.status})")
            elif _owner_alive(owner):
                report.kept.append(f"container {container.name} ({container.status}, in use by {owner})")
            else:
                container.remove(v=True)
                report.containers.append(str(container.name))

    def _clean_images(self, report: CleanReport) -> None:
        in_use = {c.attrs.get("Image") for c in self.client.containers.list(filters=self._project_filter())}
        for image in self.client.images.list(filters=self._project_filter()):
            name = ", ".join(image.tags) or image.short_id
            if image.id in in_use:
                report.kept.append(f"image {name} (used by a running container)")
                continue
            try:
                self.client.images.remove(str(image.id), force=False, noprune=False)
            except DOCKER_FAILURES as error:
                report.kept.append(f"image {name} ({getattr(error, 'explanation', error)})")
                continue
            report.images.append(name)


class RunningContainer:
    """A created container: copy files in, start it, stream its output, wait, copy files out."""

    def __init__(self, container: Container, api: docker.APIClient) -> None:
        self._container = container
        self._api = api

    @property
    def name(self) -> str:
        return str(self._container.name)

    @property
    def id(self) -> str:
        return str(self._container.id)

    def put_files(self, files: dict[PurePosixPath, PlanFile]) -> None:
        self._put_archive(tar_of_files(files))

    def commit(self, reference: str, labels: dict[str, str]) -> str:
        """Save the container's file system as the image `reference` (with `labels`, so `clean --full` finds it);
        returns the image id."""
        repository, _, tag = reference.rpartition(":")
        try:
            image = self._container.commit(repository=repository, tag=tag, conf={"Labels": labels})
        except DOCKER_FAILURES as error:
            raise _docker_failure(f"saving {self.name} as {reference}", error) from None
        return str(image.id)

    def put_bytes(self, path: PurePosixPath, data: bytes, mode: int = 0o600) -> None:
        self._put_archive(_tar_of_blob(path, data, mode))

    def put_host_file(self, source: Path, target: PurePosixPath, mode: int = 0o644) -> None:
        """Copy a (possibly large) host file into the container without holding it in memory twice."""
        with tempfile.TemporaryFile() as spool:
            with tarfile.open(fileobj=spool, mode="w") as archive:
                info = archive.gettarinfo(str(source), arcname=str(target).lstrip("/"))
                info.mode = mode
                info.uid = info.gid = 0
                with source.open("rb") as stream:
                    archive.addfile(info, stream)
            spool.seek(0)
            self._put_archive(spool)

    def _put_archive(self, archive: bytes | IO[bytes]) -> None:
        try:
            self._container.put_archive("/", archive)
        except DOCKER_FAILURES as error:
            raise _docker_failure(f"copying files into {self.name}", error) from None

    def start(self) -> None:
        try:
            self._container.start()
        except DOCKER_FAILURES as error:
            raise _docker_failure(f"starting container {self.name}", error) from None

    def stream_output(self, on_line: LineSink) -> int:
        """Follow stdout+stderr line by line until the container exits; return its exit code."""
        splitter = _LineSplitter(on_line)
        try:
            for chunk in self._container.logs(stream=True, follow=True, stdout=True, stderr=True):
                splitter.feed(chunk)
            emitted = splitter.emitted
            status = int(self._container.wait()["StatusCode"])
            # dockerd 20.10 can end a followed stream before the last log entry: take it from the final logs.
            final = self._container.logs(stdout=True, stderr=True, tail=50).split(b"\n")
            for line in _missed_tail(emitted, final):
                on_line(line.decode(errors="replace").rstrip("\r"))
            return status
        except DOCKER_FAILURES as error:
            raise _docker_failure(f"following container {self.name}", error) from None

    def exec_streaming(
        self, command: list[str] | tuple[str, ...], on_line: LineSink, environment: dict[str, str] | None = None
    ) -> int:
        """Run a command in the running container, streaming its output line by line; return its exit code."""
        api = self._api
        # One splitter per stream: a partial stdout line and a stderr line must never merge into one line.
        stdout, stderr = _LineSplitter(on_line), _LineSplitter(on_line)
        try:
            exec_id = api.exec_create(self.id, list(command), environment=environment, stdout=True, stderr=True)["Id"]
            for out_chunk, err_chunk in api.exec_start(exec_id, stream=True, demux=True):
                if out_chunk:
                    stdout.feed(out_chunk)
                if err_chunk:
                    stderr.feed(err_chunk)
            stdout.flush()
            stderr.flush()
            return int(api.exec_inspect(exec_id)["ExitCode"] or 0)
        except DOCKER_FAILURES as error:
            raise _docker_failure(f"running {command[0]} in {self.name}", error) from None

    def write_secret(self, path: PurePosixPath, data: bytes) -> None:
        """Write `data` to `path` (mode 0600) through the standard input of a command in the container: a secret never
        appears in argv, the environment, an image layer or a docker-cp'd archive. `path` should be on a tmpfs."""
        api = self._api
        try:
            exec_id = api.exec_create(self.id, ["dd", f"of={path}", "status=none"], stdin=True, stdout=True,
                                      stderr=True)["Id"]  # fmt: skip
            connection = api.exec_start(exec_id, socket=True)
            raw: Any = getattr(connection, "_sock", connection)
            raw.sendall(data)
            raw.shutdown(socket.SHUT_WR)
            while raw.recv(4096):
                pass
            raw.close()
            deadline = time.monotonic() + 30
            while (state := api.exec_inspect(exec_id))["Running"] and time.monotonic() < deadline:
                time.sleep(0.05)
        except (*DOCKER_FAILURES, OSError) as error:
            raise _docker_failure(f"handing a secret file to {self.name}", error) from None
        if state["ExitCode"] != 0:
            raise DockerError(f"writing {path} in {self.name} failed (exit {state['ExitCode']})")
        code, output = self.run(["chmod", "600", str(path)])
        if code != 0:
            raise DockerError(f"chmod of {path} in {self.name} failed: {output.strip()}")

    def clear_directory(self, directory: PurePosixPath) -> None:
        """Delete everything below `directory` (e.g. the secrets tmpfs once a step is done with them)."""
        code, output = self.run(["find", str(directory), "-mindepth", "1", "-delete"])
        if code != 0:
            raise DockerError(f"clearing {directory} in {self.name} failed: {output.strip()}")

    def run(
        self, command: list[str], user: str | None = None, environment: dict[str, str] | None = None
    ) -> tuple[int, str]:
        """Run a command in the running container; return its exit code and combined output."""
        try:
            result = self._container.exec_run(command, user=user or "", environment=environment, demux=False)
        except DOCKER_FAILURES as error:
            raise _docker_failure(f"running {command[0]} in {self.name}", error) from None
        output = result.output if isinstance(result.output, bytes) else b""
        return int(result.exit_code or 0), output.decode(errors="replace")

    def start_process(
        self, command: list[str] | tuple[str, ...], user: str | None = None, environment: dict[str, str] | None = None
    ) -> None:
        """Start a long-running command (a daemon that stays in the foreground, as under systemd) in the running
        container and return at once; it lives as long as the container."""
        try:
            self._container.exec_run(list(command), user=user or "", environment=environment, detach=True)
        except DOCKER_FAILURES as error:
            raise _docker_failure(f"starting {command[0]} in {self.name}", error) from None

    def copy_out(self, path: PurePosixPath, destination: IO[bytes]) -> None:
        """Write the tar stream of `path` (as `docker cp` produces it) into `destination`."""
        try:
            stream, _ = self._container.get_archive(str(path))
            for chunk in stream:
                destination.write(chunk)
        except DOCKER_FAILURES as error:
            raise _docker_failure(f"copying {path} out of {self.name}", error) from None

    def read_text_files(self, directory: PurePosixPath) -> dict[str, str]:
        """The small text files directly inside `directory`, by name."""
        buffer = io.BytesIO()
        self.copy_out(directory, buffer)
        buffer.seek(0)
        files = {}
        with tarfile.open(fileobj=buffer, mode="r") as archive:
            for member in archive.getmembers():
                if len(PurePosixPath(member.name).parts) != 2:  # `<directory name>/<file>` only
                    continue
                extracted = archive.extractfile(member) if member.isfile() else None
                if extracted is not None:
                    files[PurePosixPath(member.name).name] = extracted.read().decode(errors="replace")
        return files


class _LineSplitter:
    """Turns a byte stream into complete lines for a sink; remembers the last lines it emitted."""

    def __init__(self, on_line: LineSink) -> None:
        self._on_line = on_line
        self._pending = b""
        self.emitted: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        self.emitted = [*self.emitted[-49:], *lines]
        for line in lines:
            self._on_line(line.decode(errors="replace").rstrip("\r"))

    def flush(self) -> None:
        if self._pending:
            self._on_line(self._pending.decode(errors="replace").rstrip("\r"))
            self._pending = b""


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_alive(owner: str) -> bool:
    """Whether the owning slurm-factory process (on this host) still runs; other hosts' owners cannot be checked."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _missed_tail(emitted: list[bytes], final: list[bytes]) -> list[bytes]:
    """The lines at the end of `final` that follow the last complete line already emitted."""
    if final and final[-1] == b"":
        final = final[:-1]
    if not emitted:
        return final
    for index in range(len(final) - 1, -1, -1):
        if final[index] == emitted[-1]:
            return final[index + 1 :]
    return []


def ensure_host_dirs(mounts: tuple[Mount, ...]) -> None:
    """Bind-mount sources must exist, or Docker refuses (or creates them root-owned)."""
    for mount in mounts:
        Path(mount.host).mkdir(parents=True, exist_ok=True)
