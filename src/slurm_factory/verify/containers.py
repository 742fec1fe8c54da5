"""Container checks: the artifact relocated into a runtime-only container, then a two-node cluster running jobs.

Containers and the network are removed afterwards whatever happens (context managers), also on Ctrl-C.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import PurePosixPath

from slurm_factory.docker_layer import NO_NETWORK, DockerSession, RunningContainer
from slurm_factory.verify.artifact_reader import ArtifactUnderTest
from slurm_factory.verify.images import CHECK_DIR, VerifyImages, emulated, node_files
from slurm_factory.verify.report import VerificationReport, check

# Unpacked here, never at the build prefix (/opt/slurm-factory-build/...), so nothing can work by accident.
RELOCATED_PREFIX = PurePosixPath("/srv/relocated/slurm-factory")
TARBALL = CHECK_DIR / "artifact.tar.gz"
# GPU vendor libraries come from the host's driver at run time; a CPU-only check host lacks them by design.
HOST_PROVIDED_LIBRARIES = "^lib(nvidia-ml|rocm_smi64|cuda)[.]"
NODES = ("n1", "n2")
CONTROLLER = NODES[0]
IDLE_TIMEOUT = 45.0
COMMAND_TIMEOUT = 90
# Another arch's binaries under qemu user emulation: the daemons start and jobs run several times slower.
EMULATED_SLOWDOWN = 6
MPI_HELLO = "/opt/slurm-factory-verify/mpi-hello"
DAEMON_LOGS = ("/var/log/slurm/slurmctld.log", "/var/log/slurm/slurmd.log")
# Docker's embedded DNS (127.0.0.11) answers the node names; it has no upstream on an internal network, so a
# lookup of anything else must fail fast or the Slurm daemons stall at start.
DNS_OPTIONS = ["timeout:1", "attempts:1"]


def _root(artifact: ArtifactUnderTest) -> PurePosixPath:
    return RELOCATED_PREFIX / artifact.root


def _prepare(container: RunningContainer, artifact: ArtifactUnderTest) -> None:
    container.put_host_file(artifact.path, TARBALL)
    container.put_files(node_files())


def check_relocated(
    artifact: ArtifactUnderTest, session: DockerSession, images: VerifyImages, report: VerificationReport
) -> None:
    """Unpack at another prefix in a runtime-only container; `ldd` must find every library of every ELF file."""
    with relocated_container(session, images.runtime.reference) as box:
        _prepare(box, artifact)
        box.start()
        with check(report, "relocated: libraries") as result:
            code, output = box.run(
                ["sh", str(CHECK_DIR / "ldd-check.sh"), str(TARBALL), str(RELOCATED_PREFIX), HOST_PROVIDED_LIBRARIES]
            )
            missing = [line.removeprefix("missing ") for line in output.splitlines() if line.startswith("missing ")]
            host = [line.removeprefix("host ") for line in output.splitlines() if line.startswith("host ")]
            count = next((line.split()[1] for line in output.splitlines() if line.startswith("elf ")), "0")
            if code != 0 or count == "0":
                result.fail("the relocated tree could not be inspected", output.splitlines()[-15:])
            elif missing:
                result.fail(f"{len(missing)} unresolved libraries at {RELOCATED_PREFIX}", missing)
            else:
                extra = f"; host-provided GPU libraries: {', '.join(sorted(set(host)))}" if host else ""
                result.ok(f"ldd resolves every library of {count} ELF files at {RELOCATED_PREFIX}{extra}")
        with check(report, "relocated: versions") as result:
            root = _root(artifact)
            for program in ("sbin/slurmctld", "sbin/slurmd"):
                code, output = box.run([str(root / program), "-V"])
                if code != 0 or output.strip() != f"slurm {artifact.version}":
                    result.fail(f"{program} -V did not print slurm {artifact.version}", output.splitlines()[-5:])
            result.ok(f"slurmctld and slurmd report {artifact.version} from {root}")


@contextmanager
def relocated_container(session: DockerSession, image: str) -> Iterator[RunningContainer]:
    """The relocated stage's container (created, not started): no network at all and no host mount — the tarball
    is copied in."""
    with session.container(image, ["sleep", "infinity"], role="verify", network=NO_NETWORK) as box:
        yield box


@contextmanager
def cluster_nodes(session: DockerSession, image: str) -> Iterator[dict[str, RunningContainer]]:
    """The cluster stage's containers n1 and n2 (created, not started) on an internal network: they reach each
    other and nothing else; no host mount."""
    with ExitStack() as stack:
        network = stack.enter_context(session.network("verify", internal=True))
        nodes = {}
        for name in NODES:
            nodes[name] = stack.enter_context(
                session.container(
                    image,
                    ["sleep", "infinity"],
                    role=f"verify-{name}",
                    network=network,
                    hostname=name,
                    extra={"dns_opt": DNS_OPTIONS},
                )
            )
        yield nodes


@contextmanager
def _cluster(
    artifact: ArtifactUnderTest, session: DockerSession, images: VerifyImages
) -> Iterator[dict[str, RunningContainer]]:
    """Two started nodes with the artifact and a shared munge key in both."""
    munge_key = os.urandom(1024)
    with cluster_nodes(session, images.cluster.reference) as nodes:
        for node in nodes.values():
            _prepare(node, artifact)
            node.put_bytes(CHECK_DIR / "munge.key", munge_key, mode=0o400)
            node.start()
        yield nodes


def _patience(artifact: ArtifactUnderTest) -> int:
    """How many times the normal time a step may take: more under emulation."""
    return EMULATED_SLOWDOWN if emulated(artifact) else 1


def _slurm(node: RunningContainer, artifact: ArtifactUnderTest, *command: str) -> tuple[int, str]:
    program = _root(artifact) / command[0]
    return node.run(
        ["timeout", str(COMMAND_TIMEOUT * _patience(artifact)), str(program), *command[1:]],
        environment={"SLURM_CONF": "/etc/slurm-verify/slurm.conf"},
    )


def _daemon_log_tails(nodes: dict[str, RunningContainer]) -> list[str]:
    evidence = []
    for name, node in nodes.items():
        for log in DAEMON_LOGS:
            code, output = node.run(["tail", "-n", "12", log])
            if code == 0 and output.strip():
                evidence += [f"{name}:{log}: {line}" for line in output.splitlines()]
    return evidence


def _wait_idle(nodes: dict[str, RunningContainer], artifact: ArtifactUnderTest) -> tuple[bool, str]:
    deadline = time.monotonic() + IDLE_TIMEOUT * _patience(artifact)
    states = ""
    while time.monotonic() < deadline:
        code, states = _slurm(nodes[CONTROLLER], artifact, "bin/sinfo", "-h", "-N", "-o", "%N %T")
        idle = {line.split()[0] for line in states.splitlines() if line.split()[1:] == ["idle"]}
        if code == 0 and idle >= set(NODES):
            return True, states
        time.sleep(0.5)
    return False, states


def check_cluster(
    artifact: ArtifactUnderTest,
    session: DockerSession,
    images: VerifyImages,
    report: VerificationReport,
) -> None:
    """munged, slurmctld and two slurmd from the relocated tree; then jobs, MPI and the modulefile."""
    with _cluster(artifact, session, images) as nodes:
        with check(report, "cluster: daemons") as result:
            for name, node in nodes.items():
                role = "controller" if name == CONTROLLER else "compute"
                code, output = node.run(
                    [
                        "sh",
                        str(CHECK_DIR / "node-start.sh"),
                        str(TARBALL),
                        str(RELOCATED_PREFIX),
                        CONTROLLER,
                        ",".join(NODES),
                        role,
                    ]
                )
                if code != 0:
                    result.fail(
                        f"starting the daemons on {name} failed (exit {code})",
                        [*output.splitlines()[-10:], *_daemon_log_tails({name: node})],
                    )
            if not result.failed:
                idle, states = _wait_idle(nodes, artifact)
                if idle:
                    result.ok(f"munged, slurmctld and slurmd up; {', '.join(NODES)} idle")
                else:
                    result.fail(
                        f"nodes not idle after {IDLE_TIMEOUT * _patience(artifact):.0f}s (sinfo: "
                        f"{states.strip() or 'no answer'})",
                        _daemon_log_tails(nodes),
                    )
        if result.failed:
            return  # jobs need the daemons; an earlier stage's failure does not stop the job checks
        controller = nodes[CONTROLLER]
        _check_srun(report, controller, artifact)
        _check_sbatch(report, controller, artifact)
        _check_mpi_plugins(report, controller, artifact)
        _check_modulefile(report, controller, artifact)
        _check_two_nodes(report, controller, artifact)
        _check_mpi_job(report, controller, artifact)


def _check_srun(report: VerificationReport, node: RunningContainer, artifact: ArtifactUnderTest) -> None:
    with check(report, "cluster: srun") as result:
        code, output = _slurm(node, artifact, "bin/srun", "-N1", "-w", CONTROLLER, "hostname")
        if code == 0 and output.strip() == CONTROLLER:
            result.ok(f"srun hostname → {CONTROLLER}")
        else:
            result.fail(f"srun hostname failed (exit {code})", output.splitlines()[-10:])


def _check_sbatch(report: VerificationReport, node: RunningContainer, artifact: ArtifactUnderTest) -> None:
    with check(report, "cluster: sbatch") as result:
        code, output = _slurm(
            node,
            artifact,
            "bin/sbatch",
            "--parsable",
            "--wait",
            "-N1",
            "-w",
            CONTROLLER,
            "-o",
            "/tmp/slurm-factory-job-%j.out",
            "--wrap",
            "hostname",
        )
        job_id = output.strip().splitlines()[-1].split(";")[0] if output.strip() else ""
        if code != 0 or not job_id.isdigit():
            result.fail(f"sbatch --wait failed (exit {code})", output.splitlines()[-10:])
            return
        _, state = _slurm(node, artifact, "bin/scontrol", "show", "job", job_id)
        _, job_output = node.run(["cat", f"/tmp/slurm-factory-job-{job_id}.out"])
        if "JobState=COMPLETED" not in state:
            result.fail(f"job {job_id} did not reach COMPLETED", re.findall(r"JobState=\S+.*", state))
        elif job_output.strip() != CONTROLLER:
            result.fail(f"job {job_id} output is {job_output.strip()!r}, expected {CONTROLLER!r}")
        else:
            result.ok(f"batch job {job_id} COMPLETED with the expected output")


def _check_mpi_plugins(report: VerificationReport, node: RunningContainer, artifact: ArtifactUnderTest) -> None:
    with check(report, "cluster: srun --mpi=list") as result:
        code, output = _slurm(node, artifact, "bin/srun", "--mpi=list")
        if code == 0 and re.search(r"^\s*pmix\s*$", output, flags=re.MULTILINE):
            result.ok("pmix is among the MPI plugin types")
        else:
            result.fail("srun --mpi=list does not list pmix", output.splitlines()[-10:])


def _check_modulefile(report: VerificationReport, node: RunningContainer, artifact: ArtifactUnderTest) -> None:
    """The artifact's own modulefile; for a Spack artifact also Spack's Lmod tree, flat or (hierarchy) loaded
    through the MPI provider's module, which must open the MPI level inside the relocated tree."""
    with check(report, "cluster: Lmod modulefile") as result:
        root = _root(artifact)
        lmod_init = artifact.toolchain.packages.verify.lmod_init
        tree = artifact.spack_modules
        command = ["bash", str(CHECK_DIR / "module-check.sh"), lmod_init, str(root), *([tree] if tree else [])]
        code, output = node.run(command)
        expected = [f"SLURM_ROOT={root}", f"sinfo={root}/bin/sinfo", f"slurmd={root}/sbin/slurmd"]
        if tree is not None:
            expected += [f"spack_sinfo={root}/bin/sinfo", f"spack_slurmd={root}/sbin/slurmd"]
        if tree == "hierarchy":
            expected.append("mpi_level=opened")
        missing = [line for line in expected if line not in output.splitlines()]
        if code == 0 and not missing:
            spack_tree = f"; Spack's {tree} Lmod tree too" if tree else ""
            result.ok(f"module load slurm puts {root}/bin and sbin on PATH{spack_tree}")
        else:
            result.fail(
                "module load slurm did not set up the relocated tree",
                [*(f"expected {line}" for line in missing), *output.splitlines()[-10:]],
            )


def _check_two_nodes(report: VerificationReport, node: RunningContainer, artifact: ArtifactUnderTest) -> None:
    with check(report, "cluster: srun -N2") as result:
        code, output = _slurm(node, artifact, "bin/srun", "-N2", "hostname")
        hosts = sorted(line.strip() for line in output.splitlines() if line.strip())
        if code == 0 and hosts == sorted(NODES):
            result.ok(f"srun -N2 hostname → {', '.join(hosts)}")
        else:
            result.fail(f"srun -N2 hostname failed (exit {code})", output.splitlines()[-10:])


def _check_mpi_job(report: VerificationReport, node: RunningContainer, artifact: ArtifactUnderTest) -> None:
    with check(report, "cluster: MPI over pmix") as result:
        code, output = _slurm(node, artifact, "bin/srun", "-N2", "-n2", "--mpi=pmix", MPI_HELLO)
        ranks = re.findall(r"^rank (\d+) of (\d+) on (\S+)$", output, flags=re.MULTILINE)
        if (
            code == 0
            and sorted(r[0] for r in ranks) == ["0", "1"]
            and {r[1] for r in ranks} == {"2"}
            and {r[2] for r in ranks} == set(NODES)
        ):
            result.ok("MPI hello-world: 2 ranks on 2 nodes via srun --mpi=pmix")
        else:
            result.fail(f"MPI job did not report 2 ranks on 2 nodes (exit {code})", output.splitlines()[-10:])
