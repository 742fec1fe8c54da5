"""Container checks: the artifact relocated into a runtime-only container, then a production-shaped cluster.

Containers and the network are removed afterwards whatever happens (context managers), also on Ctrl-C.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath

from slurm_factory.docker_engine import NO_NETWORK, DockerSession, RunningContainer
from slurm_factory.verify.accounting import (
    check_associations,
    check_job_record,
    check_qos_limit,
    check_unassociated_user_refused,
)
from slurm_factory.verify.artifact_reader import ArtifactUnderTest
from slurm_factory.verify.cluster import (
    DATABASE,
    DNS_OPTIONS,
    INSTALL_PREFIX,
    Cluster,
    install,
    start_configless,
    start_controller,
)
from slurm_factory.verify.images import CHECK_DIR, VerifyImages, node_files
from slurm_factory.verify.jobs import check_debug_symbols_in_gdb, check_jobs, check_pam_slurm_adopt
from slurm_factory.verify.report import VerificationReport, check
from slurm_factory.verify.rest import check_rest
from slurm_factory.verify.upgrade import (
    OldState,
    check_database_converted,
    check_state_kept,
    pending_conversion,
    run_old_release,
)

# Unpacked here, never at the build prefix (/opt/slurm-factory-build/...), so nothing can work by accident.
RELOCATED_PREFIX = PurePosixPath("/srv/relocated/slurm-factory")
TARBALL = CHECK_DIR / "artifact.tar.gz"
# GPU vendor libraries come from the host's driver at run time; a CPU-only check host lacks them by design.
HOST_PROVIDED_LIBRARIES = "^lib(nvidia-ml|rocm_smi64|cuda)[.]"


def _root(artifact: ArtifactUnderTest) -> PurePosixPath:
    return RELOCATED_PREFIX / artifact.root


def _prepare(container: RunningContainer, artifact: ArtifactUnderTest) -> None:
    container.put_host_file(artifact.path, TARBALL)
    container.put_files(node_files())


def check_relocated(
    artifact: ArtifactUnderTest, session: DockerSession, images: VerifyImages, *, report: VerificationReport
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
def database_container(session: DockerSession, images: VerifyImages, network: str) -> Iterator[RunningContainer]:
    """The cluster's MariaDB container, started (not yet serving: `start_database_server`)."""
    with session.container(
        images.database.reference,
        ["sleep", "infinity"],
        role=f"verify-{DATABASE}",
        network=network,
        hostname=DATABASE,
        extra={"dns_opt": DNS_OPTIONS},
    ) as database:
        database.start()
        yield database


DATABASE_STATUS = CHECK_DIR / "db.status"
DATABASE_LOG = CHECK_DIR / "db.log"


def start_database_server(database: RunningContainer, password: str) -> None:
    """Start MariaDB in the background (it initializes while the other images build); `database_ready` waits."""
    database.put_files(node_files())
    database.put_bytes(CHECK_DIR / "db-password", password.encode(), mode=0o400)
    database.start_process(
        ["sh", "-c", f"sh {CHECK_DIR / 'db-start.sh'} {CHECK_DIR / 'db-password'} > {DATABASE_LOG} 2>&1; "
         f"echo $? > {DATABASE_STATUS}"]
    )  # fmt: skip


def database_ready(database: RunningContainer, timeout: float) -> tuple[bool, list[str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, status = database.run(["cat", str(DATABASE_STATUS)])
        if code == 0 and status.strip():
            _, log = database.run(["cat", str(DATABASE_LOG)])
            return status.strip() == "0", log.splitlines()[-8:]
        time.sleep(0.3)
    return False, ["MariaDB did not start in time"]


def check_cluster(cluster: Cluster, report: VerificationReport) -> None:
    """The production-shaped cluster, one check after the other: database, install, daemons from their units,
    configless node and login node, accounting, jobs, REST, pam_slurm_adopt, gdb."""
    if not check_database(cluster, report):
        return
    old_state = run_old_release(cluster, report) if cluster.old_artifact is not None else None
    if cluster.old_artifact is not None and old_state is None:
        return
    if not install(cluster, report, INSTALL_PREFIX / "artifact", name="cluster: install"):
        return
    before = pending_conversion(cluster) if old_state is not None else ""
    check_release_under_test(cluster, report, old_state=old_state, before=before)


def check_release_under_test(
    cluster: Cluster, report: VerificationReport, *, old_state: OldState | None, before: str
) -> None:
    """The installed release under test: its daemons in SchedMD's order, the configless nodes, accounting; after an
    upgrade (`old_state`) the old release's database and state; then the workload."""
    if not start_controller(cluster, report) or not start_configless(cluster, report):
        return
    if old_state is not None:
        check_database_converted(cluster, report, old_state, before=before)
    if not check_associations(cluster, report):
        return
    if old_state is not None:
        check_state_kept(cluster, report, old_state)
    check_workload(cluster, report)


def check_database(cluster: Cluster, report: VerificationReport) -> bool:
    """The MariaDB server of the database container serves, with slurmdbd's account."""
    with check(report, "cluster: database") as result:
        ready, evidence = database_ready(cluster.database, 120.0 * cluster.patience)
        version = re.search(r"Ver\s+(\S+)", "\n".join(evidence))
        if ready:
            result.ok(f"MariaDB {version[1] if version else ''} on {DATABASE}; slurmdbd's account created")
        else:
            result.fail(f"the MariaDB server on {DATABASE} did not start", evidence)
    return not result.failed


def check_workload(cluster: Cluster, report: VerificationReport) -> None:
    """What a running cluster with accounting must do: refuse a user without an association, run jobs (srun,
    sbatch, MPI, two nodes), record them, enforce a QOS limit, answer REST, adopt ssh sessions, debug in gdb."""
    check_unassociated_user_refused(cluster, report)
    batch = check_jobs(cluster, report)
    check_job_record(cluster, report, batch)
    check_qos_limit(cluster, report)
    check_rest(cluster, report)
    check_pam_slurm_adopt(cluster, report)
    check_debug_symbols_in_gdb(cluster, report)
