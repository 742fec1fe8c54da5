"""An in-place upgrade on the check cluster (`--upgrade-from OLD`): one cluster, two releases, one state.

The old release is installed and started as a site runs it: accounting, a job that completes, a job held pending
and a reservation. Its daemons stop; the new release is unpacked beside it and its setup script run again (which
keeps the configuration and points the units at the new tree); its daemons start on the same StateSaveLocation and
database, slurmdbd first as SchedMD's upgrade guide orders it. Then the state must still be there: the held job,
released, completes; the reservation exists; sacct shows the old job and the new one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from slurm_factory.verify.accounting import check_associations
from slurm_factory.verify.cluster import (
    CONTROLLER,
    INSTALL_PREFIX,
    LOGIN,
    NODES,
    OLD_TARBALL,
    USER,
    Cluster,
    install,
    job_id,
    start_configless,
    start_controller,
)
from slurm_factory.verify.report import VerificationReport, check

RESERVATION = "slurm-factory-upgrade"
# Stopped in this order: the controller and the nodes first, slurmdbd last (it is started first).
DAEMONS_BY_NODE = {CONTROLLER: ("slurmrestd", "slurmctld", "slurmd", "slurmdbd"), "n2": ("slurmd",), LOGIN: ("sackd",)}


@dataclass(frozen=True)
class OldState:
    """What the old release left for the new one to keep."""

    version: str
    completed_job: str
    held_job: str


def run_old_release(cluster: Cluster, report: VerificationReport) -> OldState | None:
    """The old release up with accounting, a completed job, a held job and a reservation, then stopped. One check:
    its steps are the cluster checks, recorded in a report of their own."""
    old = cluster.old_artifact
    assert old is not None
    steps = VerificationReport(old.path.name, old.sha256)
    with check(report, "upgrade: old release") as result:
        new_artifact = cluster.artifact
        cluster.artifact = old
        try:
            up = (
                install(cluster, steps, INSTALL_PREFIX / "old", name="install", tarball=OLD_TARBALL)
                and start_controller(cluster, steps, "daemons")
                and start_configless(cluster, steps, ("configless node", "login node"))
                and check_associations(cluster, steps)
            )
            state = leave_state(cluster, steps, old.version) if up else None
            stop_everything(cluster)
        finally:
            cluster.artifact = new_artifact
        failed = steps.failures
        if state is None or failed:
            result.fail(
                f"the old release {old.version} did not run: {failed[0].name if failed else 'no state left'}",
                [line for step in failed for line in [step.summary, *step.evidence[:8]]],
            )
            return None
        result.ok(
            f"Slurm {old.version} ran with accounting: job {state.completed_job} completed, job {state.held_job} "
            f"held, reservation {RESERVATION}; its daemons stopped"
        )
    return state


def leave_state(cluster: Cluster, steps: VerificationReport, version: str) -> OldState | None:
    with check(steps, "state") as result:
        code, output = cluster.slurm(
            LOGIN, "bin/sbatch", "--parsable", "-o", "/dev/null", "--wrap", "hostname", user=USER
        )
        completed = job_id(output)
        if code != 0 or completed is None:
            result.fail(f"the old release's job was not submitted (exit {code})", output.splitlines()[-5:])
            return None
        done, state = cluster.wait_for(lambda: _state_is(cluster, completed, "COMPLETED"), 60)
        recorded, record = cluster.wait_for(lambda: _in_sacct(cluster, completed), 30)
        code, output = cluster.slurm(
            LOGIN, "bin/sbatch", "--parsable", "--hold", "-o", "/dev/null", "--wrap", "hostname", user=USER
        )
        held = job_id(output)
        reserved = cluster.slurm(
            CONTROLLER, "bin/scontrol", "create", "reservation", f"ReservationName={RESERVATION}",
            "StartTime=now+1day", "Duration=60", f"Users={USER}", f"Nodes={CONTROLLER}",
        )  # fmt: skip
        if not done:
            result.fail(f"job {completed} of the old release did not complete: {state}")
        elif not recorded:
            result.fail(f"job {completed} is not in the old release's accounting: {record}")
        elif held is None:
            result.fail("the held job was not submitted", output.splitlines()[-5:])
        elif reserved[0] != 0:
            result.fail("the reservation was not created", reserved[1].splitlines()[-5:])
        else:
            result.ok("state left")
    return None if result.failed or held is None else OldState(version, completed, held)


def stop_everything(cluster: Cluster) -> None:
    for node in NODES:
        cluster.stop_daemons(node, DAEMONS_BY_NODE.get(node, ()))


def _state_is(cluster: Cluster, job: str, wanted: str) -> tuple[bool, str]:
    _, output = cluster.slurm(CONTROLLER, "bin/scontrol", "show", "job", job)
    state = re.search(r"JobState=(\S+)", output)
    reason = re.search(r"Reason=(\S+)", output)
    found = f"{state[1] if state else 'unknown'} ({reason[1] if reason else '-'})"
    return bool(state and state[1] == wanted), found


def _in_sacct(cluster: Cluster, job: str) -> tuple[bool, str]:
    _, output = cluster.slurm(LOGIN, "bin/sacct", "-j", job, "-X", "-n", "-P", "-o", "JobID,State", user=USER)
    return f"{job}|COMPLETED" in output.splitlines(), output.strip() or "no record"


def pending_conversion(cluster: Cluster) -> str:
    """What the new slurmdbd says of the old database before it starts (`slurmdbd -u`, as upgrade tooling asks)."""
    _, output = cluster.slurm(CONTROLLER, "sbin/slurmdbd", "-u", user="slurm")
    lines = [line.strip() for line in output.splitlines() if "onversion" in line]
    return lines[-1] if lines else output.strip().splitlines()[-1] if output.strip() else "no answer"


def check_database_converted(cluster: Cluster, report: VerificationReport, state: OldState, *, before: str) -> None:
    """The new slurmdbd took over the old database: it answers, and the old release's job is in it."""
    with check(report, "upgrade: database converted") as result:
        log = cluster.read(CONTROLLER, "/var/log/slurm/slurmdbd.log") or ""
        converted = [line.split("] ", 1)[-1] for line in log.splitlines() if "Conversion done" in line]
        recorded, record = cluster.wait_for(lambda: _in_sacct(cluster, state.completed_job), 30)
        if not recorded:
            result.fail(f"the old release's job {state.completed_job} is gone from accounting: {record}")
        else:
            done = f"; {converted[-1]}" if converted else ""
            result.ok(f"slurmdbd -u before the start: {before}{done}; the new slurmdbd started first on the old "
                      f"database and job {state.completed_job} of {state.version} is still in sacct")  # fmt: skip


def check_state_kept(cluster: Cluster, report: VerificationReport, state: OldState) -> None:
    """The new slurmctld read the old StateSaveLocation: the held job and the reservation are there; the job,
    released, completes, and sacct shows it beside the old release's job."""
    with check(report, "upgrade: state kept") as result:
        held, found = _state_is(cluster, state.held_job, "PENDING")
        _, reservations = cluster.slurm(CONTROLLER, "bin/scontrol", "show", "reservation", RESERVATION)
        if not held:
            result.fail(f"the held job {state.held_job} is not pending after the upgrade: {found}")
            return
        if f"ReservationName={RESERVATION}" not in reservations:
            result.fail(f"the reservation {RESERVATION} did not survive the upgrade", reservations.splitlines()[-3:])
            return
        # Jobs without a time limit could not start on a node reserved from tomorrow on: the checks that follow
        # need the whole cluster.
        cluster.slurm(CONTROLLER, "bin/scontrol", "delete", f"ReservationName={RESERVATION}")
        code, output = cluster.slurm(CONTROLLER, "bin/scontrol", "release", state.held_job)
        if code != 0:
            result.fail(f"scontrol release {state.held_job} failed", output.splitlines()[-3:])
            return
        done, after = cluster.wait_for(lambda: _state_is(cluster, state.held_job, "COMPLETED"), 60)
        both, record = cluster.wait_for(
            lambda: (_in_sacct(cluster, state.held_job)[0] and _in_sacct(cluster, state.completed_job)[0], ""), 30
        )
        if not done:
            result.fail(f"the released job {state.held_job} did not complete: {after}")
        elif not both:
            result.fail(f"sacct does not show both jobs {state.completed_job} and {state.held_job} {record}")
        else:
            result.ok(
                f"held job {state.held_job} and reservation {RESERVATION} kept; released, the job completed; sacct "
                f"shows job {state.completed_job} ({state.version}) and job {state.held_job}"
            )
