"""Accounting on the check cluster, in its MariaDB through slurmdbd, enforced by slurmctld
(`AccountingStorageEnforce=associations,limits,qos`, the shipped example's): associations, a refused job, a job's
record in `sacct`, and a QOS limit.
"""

from __future__ import annotations

from slurm_factory.verify.cluster import ACCOUNT, CONTROLLER, LOGIN, OTHER_USER, USER, Cluster, job_id
from slurm_factory.verify.report import VerificationReport, check

LIMIT_QOS = "verify-limit"
# What sacctmgr says (exiting 1) when an association is already there: an upgraded cluster keeps its own.
ALREADY_THERE = ("nothing new added", "nothing added", "nothing modified", "already exist")


def check_associations(cluster: Cluster, report: VerificationReport) -> bool:
    """An account, a user in it and a QOS with MaxJobsPerUser=1 for that user, added with sacctmgr; slurmctld
    learns them from slurmdbd."""
    with check(report, "accounting: associations") as result:
        for command in (
            ("add", "account", ACCOUNT, "Description=slurm-factory verification", "Organization=verify"),
            ("add", "qos", LIMIT_QOS, "MaxJobsPerUser=1"),
            ("add", "user", USER, f"Account={ACCOUNT}"),
            ("modify", "user", USER, "set", f"QOS+={LIMIT_QOS}"),
        ):
            code, output = cluster.slurm(CONTROLLER, "bin/sacctmgr", "-i", *command)
            if code != 0 and not any(words in output.lower() for words in ALREADY_THERE):
                result.fail(f"sacctmgr {' '.join(command[:3])} failed (exit {code})", output.splitlines()[-5:])
                return False
        known, detail = cluster.wait_for(lambda: _controller_knows(cluster), 30)
        if not known:
            result.fail(f"slurmctld does not know {USER}'s association", [detail])
        else:
            result.ok(f"sacctmgr added account {ACCOUNT}, user {USER} and QOS {LIMIT_QOS}; slurmctld has them")
    return not result.failed


def _controller_knows(cluster: Cluster) -> tuple[bool, str]:
    _, output = cluster.slurm(CONTROLLER, "bin/scontrol", "show", "assoc_mgr", f"users={USER}", "flags=assoc")
    return f"UserName={USER}" in output and f"Account={ACCOUNT}" in output, output.strip()[-300:]


def check_unassociated_user_refused(cluster: Cluster, report: VerificationReport) -> None:
    with check(report, "accounting: job without association refused") as result:
        code, output = cluster.slurm(LOGIN, "bin/sbatch", "--parsable", "--wrap", "hostname", user=OTHER_USER)
        if code != 0 and "invalid account" in output.lower():
            result.ok(f"{OTHER_USER}, who has no association, is refused: {output.strip().splitlines()[-1]}")
        else:
            result.fail(f"a job of {OTHER_USER}, who has no association, was not refused (exit {code})",
                        output.splitlines()[-5:])  # fmt: skip


def check_job_record(cluster: Cluster, report: VerificationReport, job: str | None) -> None:
    """The batch job's record in the database: its state, exit code and account."""
    with check(report, "accounting: sacct") as result:
        if job is None:
            result.fail("no batch job completed to look up (see cluster: sbatch)")
            return
        expected = f"{job}|COMPLETED|0:0|{ACCOUNT}"
        found, record = cluster.wait_for(lambda: _record(cluster, job, expected), 30)
        if found:
            result.ok(f"sacct: job {job} COMPLETED, exit code 0:0, account {ACCOUNT}")
        else:
            result.fail(f"sacct does not show job {job} as {expected}", [record])


def _record(cluster: Cluster, job: str, expected: str) -> tuple[bool, str]:
    _, output = cluster.slurm(
        LOGIN, "bin/sacct", "-j", job, "-X", "-n", "-P", "-o", "JobID,State,ExitCode,Account", user=USER
    )
    return expected in output.splitlines(), output.strip() or "no record"


def check_qos_limit(cluster: Cluster, report: VerificationReport) -> None:
    """Two jobs under the QOS that allows one per user: the second waits with reason QOSMaxJobsPerUserLimit."""
    with check(report, "accounting: QOS limit") as result:
        jobs = []
        try:
            for _ in range(2):
                code, output = cluster.slurm(
                    LOGIN, "bin/sbatch", "--parsable", f"--qos={LIMIT_QOS}", "-o", "/dev/null", "--wrap", "sleep 60",
                    user=USER,
                )  # fmt: skip
                submitted = job_id(output)
                if code != 0 or submitted is None:
                    result.fail(f"sbatch --qos={LIMIT_QOS} failed (exit {code})", output.splitlines()[-5:])
                    return
                jobs.append(submitted)
            held, reason = cluster.wait_for(lambda: _held_by_qos(cluster, jobs[1]), 20)
            if held:
                result.ok(f"job {jobs[1]} waits for job {jobs[0]}: {reason} (MaxJobsPerUser=1)")
            else:
                result.fail(f"the second job under {LIMIT_QOS} is not held by the QOS limit: {reason}")
        finally:
            if jobs:
                cluster.slurm(LOGIN, "bin/scancel", *jobs, user=USER)


def _held_by_qos(cluster: Cluster, job: str) -> tuple[bool, str]:
    _, output = cluster.slurm(CONTROLLER, "bin/squeue", "-h", "-j", job, "-o", "%T %r")
    return output.strip() == "PENDING QOSMaxJobsPerUserLimit", output.strip() or "gone"
