"""Running a plan's build container (both engines): copy the plan in, stream the build, copy the tree out.

The engines differ only in what the plan holds (image, script, environment); this is how any plan runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from slurm_factory.build_lock import publish_lock
from slurm_factory.docker_engine import BUILD_ID_LABEL, DockerSession, RunningContainer, ensure_host_dirs
from slurm_factory.exceptions import BuildError, DockerError
from slurm_factory.plan import BuildPlan, CompilerPlan, layout
from slurm_factory.plan.model import PackagePlan
from slurm_factory.progress import BuildMonitor
from slurm_factory.request import without_credentials

# Every plan that runs one build container: a tarball, a compiler, a native package set.
ContainerPlan = BuildPlan | CompilerPlan | PackagePlan

IDLE_COMMAND = ("sleep", "infinity")
# Memory-backed, private to root, never part of the container's writable layer.
SECRETS_TMPFS = "size=4m,mode=0700"


@dataclass(frozen=True)
class EngineOutput:
    """The installed tree as a tar stream from the container, and the build's metadata files by name. A failed
    publish step does not throw the build away: the tree is there and `publish_error` says what failed."""

    tree_tar: Path
    meta: dict[str, str]
    publish_error: BuildError | None = None


def _no_secrets() -> dict[str, bytes]:
    return {}


@dataclass(frozen=True)
class SecretHandout:
    """Secret files (name → content) for the build container's tmpfs, made for each step just before it runs:
    `build` before the build script (e.g. credentials to read an s3:// buildcache), `publish` before the push
    (the signing key, credentials to write). Made late, temporary credentials are fresh; handed over per step,
    the signing key is not in the container while packages build."""

    build: Callable[[], dict[str, bytes]] = _no_secrets
    publish: Callable[[], dict[str, bytes]] = _no_secrets


def run_build(
    plan: ContainerPlan,
    session: DockerSession,
    monitor: BuildMonitor,
    *,
    scratch: Path,
    handout: SecretHandout | None = None,
) -> EngineOutput:
    """Run the build container; on success copy the install prefix and the metadata out, then run the plan's
    publish step (if any) and remove the container.

    With a handout or a publish step the container idles on a tmpfs (layout.SECRETS) and each step runs as an exec:
    its secrets are written there through a command's standard input first and removed when it ends. Nothing
    secret reaches argv, the environment or an image layer."""
    spec = plan.container
    stepped = handout is not None or spec.publish_command is not None
    handout = handout or SecretHandout()
    ensure_host_dirs(spec.mounts)
    with session.container(
        plan.image.reference,
        IDLE_COMMAND if stepped else spec.command,
        role="build",
        mounts=spec.mounts,
        environment=spec.environment,
        labels={BUILD_ID_LABEL: plan.build_id},
        extra={"tmpfs": {str(layout.SECRETS): SECRETS_TMPFS}} if stepped else None,
    ) as container:
        monitor.note(f"build container {container.name} from {plan.image.reference}")
        container.put_files(spec.files)
        container.start()
        if stepped:
            exit_code = _run_step(container, spec.command, handout.build, monitor=monitor)
        else:
            exit_code = container.stream_output(monitor.output)
        if exit_code != 0:
            raise _step_failure(container, plan, monitor, step="build", exit_code=exit_code)
        monitor.stage("collect")
        tree_tar = scratch / "tree.tar"
        with tree_tar.open("wb") as destination:
            container.copy_out(spec.install_prefix, destination)
        meta = container.read_text_files(spec.meta_dir)
        publish_error = None
        if spec.publish_command is not None:
            mirror = without_credentials(plan.request.publish_url or "the local buildcache")
            with publish_lock(plan.log_path.parent, mirror, monitor.note):
                exit_code = _run_step(container, spec.publish_command, handout.publish, monitor=monitor)
            if exit_code != 0:
                publish_error = _step_failure(container, plan, monitor, step="publish step", exit_code=exit_code)
    return EngineOutput(tree_tar=tree_tar, meta=meta, publish_error=publish_error)


def _step_failure(
    container: RunningContainer, plan: ContainerPlan, monitor: BuildMonitor, *, step: str, exit_code: int
) -> BuildError:
    kept = _keep_failure_logs(container, plan)
    return BuildError(
        f"the {step} of {plan.artifact_root} failed (exit code {exit_code})",
        log_path=plan.log_path,
        tail=monitor.tail(15),
        hint=f"the failing packages' build logs are in {kept}" if kept else None,
    )


def _run_step(
    container: RunningContainer,
    command: tuple[str, ...],
    secrets: Callable[[], dict[str, bytes]],
    *,
    monitor: BuildMonitor,
) -> int:
    """One step as a streamed exec, with its secrets on the tmpfs only while it runs."""
    files = secrets()
    for name, data in files.items():
        container.write_secret(layout.SECRETS / name, data)
    if files:
        monitor.note(f"{len(files)} secret file(s) on the container's tmpfs {layout.SECRETS} for {command[-1]}")
    try:
        return container.exec_streaming(command, monitor.output)
    finally:
        if files:
            container.clear_directory(layout.SECRETS)


def _keep_failure_logs(container: RunningContainer, plan: ContainerPlan) -> Path | None:
    """Copy `<meta>/failure/*` (spack-build-out.txt, config.log of failed packages) next to the build log."""
    try:
        logs = container.read_text_files(plan.container.meta_dir / "failure")
    except DockerError:
        return None  # the build failed before it had anything to keep
    if not logs:
        return None
    directory = plan.log_path.with_suffix("")
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in logs.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory
