"""Jobs on the check cluster, submitted from the configless login node as an ordinary user: a step, a batch job,
two nodes, MPI over PMIx, the modulefile under Lmod, pam_slurm_adopt through the system's PAM directory, and gdb
finding the symbols of the debug companion.
"""

from __future__ import annotations

import re

from slurm_factory.verify.cluster import COMPUTE, CONTROLLER, LOGIN, OTHER_USER, SLURM_NODES, USER, Cluster, job_id
from slurm_factory.verify.images import CHECK_DIR
from slurm_factory.verify.report import VerificationReport, check

MPI_HELLO = "/opt/slurm-factory-verify/mpi-hello"
PAM_SERVICE = "slurm-factory-verify"


def check_jobs(cluster: Cluster, report: VerificationReport) -> str | None:
    """Every job check; returns the id of the batch job that completed (accounting looks it up), if one did."""
    _check_srun(cluster, report)
    batch = _check_sbatch(cluster, report)
    _check_mpi_plugins(cluster, report)
    if cluster.lmod:
        _check_modulefile(cluster, report)
    _check_two_nodes(cluster, report)
    _check_mpi_job(cluster, report)
    return batch


def _check_srun(cluster: Cluster, report: VerificationReport) -> None:
    with check(report, "cluster: srun") as result:
        code, output = cluster.slurm(LOGIN, "bin/srun", "-N1", "-w", COMPUTE, "hostname", user=USER)
        if code == 0 and output.strip() == COMPUTE:
            result.ok(f"srun hostname as {USER} from {LOGIN} → {COMPUTE} (the configless node)")
        else:
            result.fail(f"srun hostname as {USER} failed (exit {code})", output.splitlines()[-10:])


def _check_sbatch(cluster: Cluster, report: VerificationReport) -> str | None:
    with check(report, "cluster: sbatch") as result:
        output_file = "/tmp/slurm-factory-job-%j.out"
        code, output = cluster.slurm(
            LOGIN, "bin/sbatch", "--parsable", "-N1", "-w", CONTROLLER, "-o", output_file, "--wrap", "hostname",
            user=USER,
        )  # fmt: skip
        batch = job_id(output)
        if code != 0 or batch is None:
            result.fail(f"sbatch as {USER} failed (exit {code})", output.splitlines()[-10:])
            return None
        # Polled here rather than with `sbatch --wait`, which sleeps up to 10 s between its own polls.
        _, state = cluster.wait_for(lambda: _ended(cluster, batch), 60)
        job_output = (cluster.read(CONTROLLER, output_file.replace("%j", batch)) or "").strip()
        if state != "COMPLETED":
            result.fail(f"job {batch} did not reach COMPLETED: {state}")
        elif job_output != CONTROLLER:
            result.fail(f"job {batch} output is {job_output!r}, expected {CONTROLLER!r}")
        else:
            result.ok(f"batch job {batch} of {USER} COMPLETED on {CONTROLLER} with the expected output")
    return None if result.failed else batch


def _ended(cluster: Cluster, job: str) -> tuple[bool, str]:
    _, output = cluster.slurm(CONTROLLER, "bin/scontrol", "show", "job", job)
    state = re.search(r"JobState=(\S+)", output)
    current = state[1] if state else "unknown"
    return current not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "unknown"), current


def _check_mpi_plugins(cluster: Cluster, report: VerificationReport) -> None:
    with check(report, "cluster: srun --mpi=list") as result:
        code, output = cluster.slurm(LOGIN, "bin/srun", "--mpi=list", user=USER)
        if code == 0 and re.search(r"^\s*pmix\s*$", output, flags=re.MULTILINE):
            result.ok("pmix is among the MPI plugin types")
        else:
            result.fail("srun --mpi=list does not list pmix", output.splitlines()[-10:])


def _check_modulefile(cluster: Cluster, report: VerificationReport) -> None:
    """The artifact's own modulefile; for a Spack artifact also Spack's Lmod tree, flat or (hierarchy) loaded
    through the MPI provider's module, which must open the MPI level inside the relocated tree."""
    with check(report, "cluster: Lmod modulefile") as result:
        root = str(cluster.root)
        artifact = cluster.artifact
        lmod_init = artifact.toolchain.packages.verify.lmod_init
        tree = artifact.spack_modules
        command = ["bash", str(CHECK_DIR / "module-check.sh"), lmod_init, root, *([tree] if tree else [])]
        code, output = cluster.nodes[LOGIN].run(command)
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


def _check_two_nodes(cluster: Cluster, report: VerificationReport) -> None:
    with check(report, "cluster: srun -N2") as result:
        code, output = cluster.slurm(LOGIN, "bin/srun", "-N2", "hostname", user=USER)
        hosts = sorted(line.strip() for line in output.splitlines() if line.strip())
        if code == 0 and hosts == sorted(SLURM_NODES):
            result.ok(f"srun -N2 hostname → {', '.join(hosts)}")
        else:
            result.fail(f"srun -N2 hostname failed (exit {code})", output.splitlines()[-10:])


def _check_mpi_job(cluster: Cluster, report: VerificationReport) -> None:
    with check(report, "cluster: MPI over pmix") as result:
        code, output = cluster.slurm(LOGIN, "bin/srun", "-N2", "-n2", "--mpi=pmix", MPI_HELLO, user=USER)
        ranks = re.findall(r"^rank (\d+) of (\d+) on (\S+)$", output, flags=re.MULTILINE)
        if (
            code == 0
            and sorted(r[0] for r in ranks) == ["0", "1"]
            and {r[1] for r in ranks} == {"2"}
            and {r[2] for r in ranks} == set(SLURM_NODES)
        ):
            result.ok("MPI hello-world: 2 ranks on 2 nodes via srun --mpi=pmix")
        else:
            result.fail(f"MPI job did not report 2 ranks on 2 nodes (exit {code})", output.splitlines()[-10:])


def check_pam_slurm_adopt(cluster: Cluster, report: VerificationReport) -> None:
    """pam_slurm_adopt from the system's PAM directory (for a tarball a link into the tree, made by the setup
    script; for packages the packaged module): a user with a job on the node is let in, one without is refused."""
    with check(report, "cluster: pam_slurm_adopt") as result:
        node = cluster.nodes[COMPUTE]
        # pam_slurm_adopt acts only for the services its `service=` names (sshd by default).
        cluster.write(
            COMPUTE, f"/etc/pam.d/{PAM_SERVICE}", f"account required pam_slurm_adopt.so service={PAM_SERVICE}\n"
        )
        code, output = cluster.slurm(
            LOGIN, "bin/sbatch", "--parsable", "-N1", "-w", COMPUTE, "-o", "/dev/null", "--wrap", "sleep 120",
            user=USER,
        )  # fmt: skip
        holder = job_id(output)
        if code != 0 or holder is None:
            result.fail(f"the job that holds {COMPUTE} for {USER} was not submitted", output.splitlines()[-5:])
            return
        try:
            running, state = cluster.wait_for(lambda: _running(cluster, holder), 30)
            if not running:
                result.fail(f"job {holder} did not start on {COMPUTE}: {state}")
                return
            allowed = node.run(["pamtester", PAM_SERVICE, USER, "acct_mgmt"])
            refused = node.run(["pamtester", PAM_SERVICE, OTHER_USER, "acct_mgmt"])
            if allowed[0] != 0:
                result.fail(f"{USER}, with job {holder} on {COMPUTE}, was refused", allowed[1].splitlines()[-5:])
            elif refused[0] == 0 or "no active jobs" not in refused[1]:
                result.fail(f"{OTHER_USER}, with no job on {COMPUTE}, was not refused by pam_slurm_adopt",
                            refused[1].splitlines()[-5:])  # fmt: skip
            else:
                result.ok(f"from the system's PAM directory: {USER} (job {holder}) let in, {OTHER_USER} refused")
        finally:
            cluster.slurm(LOGIN, "bin/scancel", holder, user=USER)


def _running(cluster: Cluster, job: str) -> tuple[bool, str]:
    _, output = cluster.slurm(CONTROLLER, "bin/squeue", "-h", "-j", job, "-o", "%T")
    return output.strip() == "RUNNING", output.strip() or "gone"


def check_debug_symbols_in_gdb(cluster: Cluster, report: VerificationReport) -> None:
    """gdb, told where the companion's lib/debug is, finds slurmctld's line table for `main`."""
    if cluster.artifact.debug_companion is None:
        return
    with check(report, "debug: gdb finds the symbols") as result:
        root = str(cluster.root)
        code, output = cluster.nodes[CONTROLLER].run(
            ["gdb", "-batch", "-nx", "-iex", f"set debug-file-directory {root}/lib/debug", "-ex", "info line main",
             f"{root}/sbin/slurmctld"]
        )  # fmt: skip
        line = next((text for text in output.splitlines() if re.match(r'^Line \d+ of "', text)), None)
        if code == 0 and line is not None:
            result.ok(f"gdb with debug-file-directory {root}/lib/debug: {line.split(' starts at')[0]}")
        else:
            result.fail("gdb found no line information for slurmctld's main", output.splitlines()[-6:])
