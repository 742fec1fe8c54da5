"""The check cluster's configuration: the artifact's own example files, as its setup script wrote them, with only
what a site edits for its cluster (names, nodes, the database) and what a container cannot do.

Docker gives containers a read-only cgroup hierarchy, so the cgroup plugins of the example cannot run in them:
they are replaced by their cgroup-free equivalents, and only those keys are. Everything else (SlurmUser, accounting
with enforcement, configless, JWT, PrologFlags) is the shipped example's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

CLUSTER_NAME = "verify"
# What a container's read-only cgroups force: job tracking and confinement without cgroups.
CGROUP_FREE = {
    "ProctrackType": "proctrack/linuxproc",
    # task/affinity's sched_setaffinity is refused in a container whose cpuset Docker set (EPERM).
    "TaskPlugin": "task/none",
    "JobAcctGatherType": "jobacct_gather/linux",
}
CGROUP_CONF = {"CgroupPlugin": "disabled"}
_KEY = re.compile(r"^\s*([A-Za-z][A-Za-z0-9]*)\s*=")


def with_settings(text: str, settings: Mapping[str, str | None], drop_prefixes: tuple[str, ...] = ()) -> str:
    """`text` (slurm.conf syntax) with each key of `settings` set: its line replaced where the key is (keys are
    case-insensitive, as Slurm reads them), appended where it is not; a None value removes the key. Lines starting
    with one of `drop_prefixes` (e.g. the example's NodeName and PartitionName) are removed."""
    wanted = {key.lower(): (key, value) for key, value in settings.items()}
    done: set[str] = set()
    lines = []
    for line in text.splitlines():
        if drop_prefixes and line.lstrip().lower().startswith(tuple(prefix.lower() for prefix in drop_prefixes)):
            continue
        match = _KEY.match(line)
        key = match[1].lower() if match else None
        if key in wanted:
            if key not in done and wanted[key][1] is not None:
                lines.append(f"{wanted[key][0]}={wanted[key][1]}")
            done.add(key)
            continue
        lines.append(line)
    for key, (name, value) in wanted.items():
        if key not in done and value is not None:
            lines.append(f"{name}={value}")
    return "\n".join(lines) + "\n"


def cluster_slurm_conf(example: str, controller: str, nodes: tuple[str, ...], *, memory_mb: int) -> str:
    """The example slurm.conf for this cluster: its name, controller, accounting host and nodes, the cgroup-free
    plugins, and a default memory per CPU so that jobs do not each take a node's whole memory."""
    settings: dict[str, str | None] = {
        "ClusterName": CLUSTER_NAME,
        "SlurmctldHost": controller,
        "AccountingStorageHost": controller,
        "DefMemPerCPU": "100",
        **CGROUP_FREE,
    }
    edited = with_settings(example, settings, drop_prefixes=("NodeName=", "PartitionName="))
    node_line = f"NodeName={','.join(nodes)} CPUs=1 RealMemory={memory_mb} State=UNKNOWN"
    partition = "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
    return edited + f"{node_line}\n{partition}\n"


def cluster_slurmdbd_conf(example: str, controller: str, database_host: str, *, password: str) -> str:
    """The example slurmdbd.conf with the database on its own host (so with a password) and slurmdbd on the
    controller."""
    return with_settings(
        example,
        {"DbdHost": controller, "StorageHost": database_host, "StoragePass": password},
    )


def cluster_cgroup_conf(example: str) -> str:
    return with_settings(example, {**CGROUP_CONF, "ConstrainCores": None, "ConstrainRAMSpace": None,
                                   "ConstrainDevices": None})  # fmt: skip


def value_of(text: str, key: str) -> str | None:
    """The value of `key` in a slurm.conf-syntax text (the last one wins, as in Slurm), or None."""
    found = None
    for line in text.splitlines():
        match = _KEY.match(line)
        if match and match[1].lower() == key.lower():
            found = line.split("=", 1)[1].split("#", 1)[0].strip()
    return found
