"""The check cluster for native packages: the tarball's cluster (MariaDB, a controller with slurmdbd, slurmctld,
slurmd and slurmrestd, a configless compute node, a login node with sackd), with every node's Slurm installed by
apt from the signed repository — daemons from /usr/sbin, units from the system's unit directory, configuration in
/etc/slurm copied from the examples the packages ship.

With an earlier release of the same Slurm in the repository, the nodes start on that one and leave state (a
completed job, a held job, a reservation); then apt upgrades every node in place with the daemons running, which
must neither stop nor restart them nor touch the site's edited files; the site then restarts the daemons in
SchedMD's order and the state must still be there, before the same job, accounting and REST checks as a tarball's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from slurm_factory.verify.accounting import check_associations
from slurm_factory.verify.cluster import (
    CONTROLLER,
    NODES,
    Cluster,
    configure_controller,
    start_configless,
    start_controller,
)
from slurm_factory.verify.containers import check_database, check_release_under_test
from slurm_factory.verify.images import CHECK_DIR
from slurm_factory.verify.report import CheckRecorder, VerificationReport, check
from slurm_factory.verify.upgrade import (
    DAEMONS_BY_NODE,
    OldState,
    leave_state,
    pending_conversion,
    stop_everything,
)

PACKAGE_ROOT = PurePosixPath("/usr")
SYSTEM_UNIT_DIR = PurePosixPath("/usr/lib/systemd/system")
# What a site edits and an upgrade must keep: its own slurm.conf (no package owns it) and an options file (a
# conffile of slurm-smd-slurmrestd, edited by the REST check's listen address).
SITE_FILES = {CONTROLLER: ("/etc/slurm/slurm.conf", "/etc/default/slurmrestd"), "n2": ("/etc/default/slurmd",)}


@dataclass(frozen=True)
class AptUpgrade:
    """The command that upgrades a node from the mounted repository only (no other source, no network), and the
    packages and version it installs."""

    command: tuple[str, ...]
    packages: tuple[str, ...]
    version: str
    installed: str


def check_package_cluster(cluster: Cluster, report: VerificationReport, *, upgrade: AptUpgrade | None) -> None:
    """Configure the installed packages as a site does, start the cluster, upgrade it when there is an earlier
    release, then the workload checks."""
    cluster.root, cluster.unit_dir, cluster.lmod = PACKAGE_ROOT, SYSTEM_UNIT_DIR, False
    if not check_database(cluster, report) or not _configure(cluster, report, upgrade=upgrade):
        return
    state: OldState | None = None
    before = ""
    if upgrade is not None:
        state = _run_installed_release(cluster, report, upgrade.installed)
        if state is None or not _upgrade_in_place(cluster, report, upgrade):
            return
        stop_everything(cluster)
        before = pending_conversion(cluster)
    check_release_under_test(cluster, report, old_state=state, before=before)


def _configure(cluster: Cluster, report: VerificationReport, *, upgrade: AptUpgrade | None) -> bool:
    version = upgrade.installed if upgrade is not None else None
    with check(report, "cluster: packages configured") as result:
        for node in NODES:
            role = "controller" if node == CONTROLLER else "node"
            code, output = cluster.nodes[node].run(["sh", str(CHECK_DIR / "package-node-setup.sh"), role])
            if code != 0:
                result.fail(f"configuring the packages on {node} failed (exit {code})", output.splitlines()[-12:])
                return False
        configure_controller(cluster, result)
        if not result.failed:
            installed = f" {version}" if version else ""
            result.ok(
                f"slurm-smd{installed} installed by apt on {', '.join(NODES)}; /etc/slurm on {CONTROLLER} from "
                "/usr/share/doc/slurm-smd/examples (the others are configless); units from "
                f"{SYSTEM_UNIT_DIR}"
            )
    return not result.failed


def _run_installed_release(cluster: Cluster, report: VerificationReport, version: str) -> OldState | None:
    """The repository's earlier release up with accounting and state left for the upgrade."""
    up = (
        start_controller(cluster, report, "upgrade: earlier release daemons")
        and start_configless(
            cluster, report, ("upgrade: earlier release configless node", "upgrade: earlier release login node")
        )
        and check_associations(cluster, report)
    )
    return leave_state(cluster, report, version) if up else None


def _daemon_pids(cluster: Cluster) -> dict[str, str]:
    pids = {}
    for node in NODES:
        for daemon in DAEMONS_BY_NODE.get(node, ()):
            _, output = cluster.nodes[node].run(["pgrep", "-x", daemon])
            pids[f"{node}:{daemon}"] = " ".join(sorted(output.split()))
    return pids


def _site_files(cluster: Cluster) -> dict[str, str | None]:
    return {f"{node}:{path}": cluster.read(node, path) for node, paths in SITE_FILES.items() for path in paths}


def _upgrade_in_place(cluster: Cluster, report: VerificationReport, upgrade: AptUpgrade) -> bool:
    """apt upgrades every node with the daemons running: they keep running (no stop, no restart), the site's files
    keep their edits, and every package is at the new version."""
    with check(report, "upgrade: apt upgrade in place") as result:
        pids, edited = _daemon_pids(cluster), _site_files(cluster)
        for node in NODES:
            code, output = cluster.nodes[node].run(list(upgrade.command))
            if code != 0:
                result.fail(
                    f"apt-get on {node} could not upgrade to {upgrade.version} (exit {code})", output.splitlines()[-12:]
                )
                return False
        _compare_after_upgrade(cluster, result, upgrade, pids=pids, edited=edited)
        if not result.failed:
            result.ok(
                f"{len(upgrade.packages)} packages {upgrade.installed} → {upgrade.version} on {', '.join(NODES)} "
                f"with the daemons running: none stopped or restarted ({len(pids)} pids unchanged), "
                f"{', '.join(edited)} kept their edits"
            )
    return not result.failed


def _compare_after_upgrade(
    cluster: Cluster,
    result: CheckRecorder,
    upgrade: AptUpgrade,
    *,
    pids: dict[str, str],
    edited: dict[str, str | None],
) -> None:
    restarted = [
        f"{daemon}: {before or 'none'} → {after or 'none'}"
        for daemon, before in pids.items()
        if (after := _daemon_pids(cluster)[daemon]) != before
    ]
    changed = [path for path, text in _site_files(cluster).items() if text != edited[path]]
    stale = []
    for node in NODES:
        _, output = cluster.nodes[node].run(["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", *upgrade.packages])
        stale += [f"{node}: {line}" for line in output.splitlines() if line.split(" ")[-1] != upgrade.version]
    if restarted:
        result.fail("the upgrade stopped or restarted a daemon", restarted)
    elif changed:
        result.fail("the upgrade changed the site's edited files", changed)
    elif stale:
        result.fail(f"packages are not at {upgrade.version} after the upgrade", stale[:12])
