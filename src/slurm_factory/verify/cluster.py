"""The check cluster: the OS's MariaDB server and three nodes on an internal network — the controller (slurmdbd,
slurmctld, slurmd, slurmrestd), a configless compute node and a login node (sackd) — with the artifact installed
on each by its own setup script and every daemon started from its own systemd unit.

`running_cluster` creates the containers and removes them afterwards whatever happens (also on Ctrl-C);
`bring_up` installs and starts the cluster and reports each step as a named check.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from slurm_factory.catalog.toolchains import multiarch_triplet
from slurm_factory.docker_engine import DockerSession, RunningContainer
from slurm_factory.plan.model import Mount
from slurm_factory.verify.artifact_reader import ArtifactUnderTest
from slurm_factory.verify.cluster_config import (
    CLUSTER_NAME,
    cluster_cgroup_conf,
    cluster_slurm_conf,
    cluster_slurmdbd_conf,
)
from slurm_factory.verify.images import CHECK_DIR, VerifyImages, emulated, node_files
from slurm_factory.verify.report import CheckRecorder, VerificationReport, check
from slurm_factory.verify.units import ServiceCommand, UnitError, parse_unit

DATABASE = "db"
CONTROLLER = "n1"
COMPUTE = "n2"
LOGIN = "login"
NODES = (CONTROLLER, COMPUTE, LOGIN)
SLURM_NODES = (CONTROLLER, COMPUTE)
CONF_DIR = PurePosixPath("/etc/slurm")
UNIT_DIR = PurePosixPath("/etc/systemd/system")
# Where each release is unpacked: never the build prefix, and two releases of an upgrade side by side.
INSTALL_PREFIX = PurePosixPath("/srv/relocated")
TARBALL = CHECK_DIR / "artifact.tar.gz"
DEBUG_TARBALL = CHECK_DIR / "artifact-debug.tar.gz"
# The release an upgrade starts from (`--upgrade-from`).
OLD_TARBALL = CHECK_DIR / "old-artifact.tar.gz"
NODE_MEMORY_MB = 500
USER = "alice"  # has an association (account research)
OTHER_USER = "bob"  # has none: accounting refuses his jobs
ACCOUNT = "research"
CONTROLLER_PORT = 6817
REST_PORT = 6820
# Docker's seccomp profile refuses unshare(2), which slurmrestd calls to drop what it shares with its parent.
REST_SECURITY = {"SLURMRESTD_SECURITY": "disable_unshare_sysv,disable_unshare_files"}
REST_OPTIONS = f"SLURMRESTD_LISTEN={CONTROLLER}:{REST_PORT}\n" + "".join(
    f"{name}={value}\n" for name, value in REST_SECURITY.items()
)
IDLE_TIMEOUT = 60.0
COMMAND_TIMEOUT = 90
# What `timeout` and the dynamic loader exit with when the program cannot run at all (not found, not executable, a
# library missing): asking again cannot change the answer.
CANNOT_RUN = (126, 127)
# Polls in a row that find a daemon gone before a wait on it gives up (the first ones may precede its exec).
GONE_POLLS = 3


class Hopeless(Exception):
    """A probe's answer that waiting cannot change (the client cannot run, it failed fatally): `wait_for` stops."""


def give_up_unless_runnable(code: int, output: str) -> None:
    """Raise `Hopeless` when a client exited as a program that cannot run does, with what it printed."""
    if code in CANNOT_RUN:
        raise Hopeless(output.strip()[-300:] or f"exit {code}")


# Another arch's binaries under qemu user emulation: the daemons start and jobs run several times slower.
EMULATED_SLOWDOWN = 6
DAEMON_LOGS = {
    "slurmctld": "/var/log/slurm/slurmctld.log",
    "slurmd": "/var/log/slurm/slurmd.log",
    "slurmdbd": "/var/log/slurm/slurmdbd.log",
}
# Docker's embedded DNS (127.0.0.11) answers the container names; it has no upstream on an internal network, so a
# lookup of anything else must fail fast or the Slurm daemons stall at start.
DNS_OPTIONS = ["timeout:1", "attempts:1"]


@dataclass
class Cluster:
    """The running containers, and the release installed on them (`root`, set by `install`)."""

    database: RunningContainer
    nodes: dict[str, RunningContainer]
    artifact: ArtifactUnderTest
    database_password: str
    root: PurePosixPath | None = None
    started: dict[str, list[str]] = field(default_factory=dict)
    old_artifact: ArtifactUnderTest | None = None
    # Where the units are read from: the setup script's directory for a tree, the system's for native packages.
    unit_dir: PurePosixPath = UNIT_DIR
    # The release under test ships an Lmod modulefile (a tree does; native packages put programs on PATH).
    lmod: bool = True

    @property
    def patience(self) -> int:
        """How many times the normal time a step may take: more under emulation."""
        return EMULATED_SLOWDOWN if emulated(self.artifact) else 1

    def program(self, relative: str) -> str:
        assert self.root is not None, "the artifact is not installed yet"
        return str(self.root / relative)

    def slurm(
        self, node: str, *command: str, user: str | None = None, environment: dict[str, str] | None = None
    ) -> tuple[int, str]:
        """A program of the installed tree (`bin/sinfo`, …) on `node`, as `user`, with a time limit."""
        timeout = str(COMMAND_TIMEOUT * self.patience)
        return self.nodes[node].run(
            ["timeout", timeout, self.program(command[0]), *command[1:]], user=user, environment=environment
        )

    def read(self, node: str, path: str) -> str | None:
        code, output = self.nodes[node].run(["cat", path])
        return output if code == 0 else None

    def write(self, node: str, path: str, text: str, *, mode: int = 0o644, owner: str | None = None) -> None:
        container = self.nodes[node]
        container.put_bytes(PurePosixPath(path), text.encode(), mode=mode)
        if owner is not None:
            container.run(["chown", owner, path])

    def start_unit(self, node: str, unit: str) -> ServiceCommand:
        """Start the service of `<unit>.service` as systemd would: its runtime directories owned by its user, its
        command line as its user and group, with its environment (options files included)."""
        text = self.read(node, str(self.unit_dir / f"{unit}.service"))
        if text is None:
            raise UnitError(f"{unit}.service is not in {self.unit_dir} on {node}: nothing installed it")
        service = parse_unit(f"{unit}.service", text, lambda path: self.read(node, path))
        owner = f"{service.user or 'root'}:{service.group or service.user or 'root'}"
        for directory in service.runtime_directories:
            self.nodes[node].run(["install", "-d", "-m", service.runtime_directory_mode, "-o", owner.split(":")[0],
                                  "-g", owner.split(":")[1], f"/run/{directory}"])  # fmt: skip
        user = f"{service.user}:{service.group}" if service.user and service.group else service.user
        environment = dict(service.environment)
        if service.service_type == "notify":
            # systemd's notify socket: the daemon sends READY=1 there once it serves (`wait_ready`).
            socket = f"/tmp/{unit}.notify-socket"
            self.nodes[node].run(["rm", "-f", socket, notify_log(unit)])
            self.nodes[node].start_process(
                ["socat", "-u", f"UNIX-RECV:{socket}", f"OPEN:{notify_log(unit)},creat,append"], user=user
            )
            self._wait_path(node, socket)
            environment["NOTIFY_SOCKET"] = socket
        # What the daemon prints before its log file is open (systemd's journal would have it) goes to a file.
        console = console_log(unit)
        self.nodes[node].start_process(
            ["sh", "-c", f'exec "$@" >>{console} 2>&1', unit, *service.argv], user=user, environment=environment
        )
        self.started.setdefault(node, []).append(unit)
        return service

    def _wait_path(self, node: str, path: str) -> None:
        deadline = time.monotonic() + 10 * self.patience
        while self.nodes[node].run(["test", "-e", path])[0] != 0 and time.monotonic() < deadline:
            time.sleep(0.05)

    def wait_ready(self, node: str, unit: str, seconds: float) -> bool:
        """A Type=notify unit's daemon said READY=1 on its notify socket (no longer waited for once it is gone)."""

        def ready() -> tuple[bool, str]:
            text = self.read(node, notify_log(unit)) or ""
            return "READY=1" in text, text

        return self.wait_for(ready, seconds, daemon=(node, unit))[0]

    def running(self, node: str, daemon: str) -> bool:
        return self.nodes[node].run(["pgrep", "-x", daemon])[0] == 0

    def stop_daemons(self, node: str, daemons: tuple[str, ...]) -> None:
        """SIGTERM, then wait until each is gone (state saved), as `systemctl stop` would."""
        container = self.nodes[node]
        for daemon in daemons:
            container.run(["pkill", "-TERM", "-x", daemon])
        deadline = time.monotonic() + 30 * self.patience
        while time.monotonic() < deadline:
            alive = [daemon for daemon in daemons if self.running(node, daemon)]
            if not alive:
                return
            time.sleep(0.3)
        for daemon in daemons:
            container.run(["pkill", "-KILL", "-x", daemon])

    def process_user(self, node: str, daemon: str) -> str | None:
        code, output = self.nodes[node].run(["ps", "-o", "user=", "-C", daemon])
        users = sorted({line.strip() for line in output.splitlines() if line.strip()})
        return ",".join(users) if code == 0 and users else None

    def log_tails(self, node: str, daemons: tuple[str, ...] = tuple(DAEMON_LOGS), lines: int = 12) -> list[str]:
        """The end of each daemon's log file and of what it printed on its console."""
        evidence = []
        for daemon in daemons:
            for log in (DAEMON_LOGS.get(daemon), console_log(daemon)):
                if log is None:
                    continue
                code, output = self.nodes[node].run(["tail", "-n", str(lines), log])
                if code == 0 and output.strip():
                    evidence += [f"{node}:{log}: {line}" for line in output.splitlines()]
        return evidence

    def wait_for(
        self, probe: Callable[[], tuple[bool, str]], seconds: float, *, daemon: tuple[str, str] | None = None
    ) -> tuple[bool, str]:
        """Call `probe()` (returning `(done, detail)`) until it is done or `seconds` times the patience pass. It
        stops early, not done, when the probe raises `Hopeless` or the `(node, daemon)` whose work it waits for is
        no longer running: a broken artifact fails in seconds, not after every timeout."""
        deadline = time.monotonic() + seconds * self.patience
        gone = 0
        while True:
            try:
                done, detail = probe()
            except Hopeless as hopeless:
                return False, str(hopeless)
            if done or time.monotonic() >= deadline:
                return done, detail
            if daemon is not None:
                gone = 0 if self.running(*daemon) else gone + 1
                if gone >= GONE_POLLS:
                    return False, f"{daemon[1]} on {daemon[0]} is not running ({detail or 'no answer'})"
            time.sleep(0.5)


def console_log(unit: str) -> str:
    return f"/tmp/{unit}.console"


def notify_log(unit: str) -> str:
    return f"/tmp/{unit}.notify"


@contextmanager
def node_containers(
    session: DockerSession, image: str, network: str, *, mounts: tuple[Mount, ...] = ()
) -> Iterator[dict[str, RunningContainer]]:
    """The cluster's nodes (created, not started) on `network`, an internal one: they reach each other and the
    database by name, nothing else; no host mount but the read-only `mounts` (a package repository)."""
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(
                session.container(
                    image,
                    ["sleep", "infinity"],
                    role=f"verify-{name}",
                    network=network,
                    hostname=name,
                    mounts=mounts,
                    extra={"dns_opt": DNS_OPTIONS},
                )
            )
            for name in NODES
        }


@contextmanager
def running_cluster(
    artifact: ArtifactUnderTest,
    session: DockerSession,
    images: VerifyImages,
    *,
    database: RunningContainer,
    network: str,
    database_password: str,
    old_artifact: ArtifactUnderTest | None = None,
) -> Iterator[Cluster]:
    """The three nodes, started beside the `database` container, each with the artifact (and its debug companion,
    and the release an upgrade starts from), the check's scripts and the cluster's munge key."""
    munge_key = os.urandom(1024)
    with node_containers(session, images.cluster.reference, network) as nodes:
        for node in nodes.values():
            put_artifact(node, artifact)
            if old_artifact is not None:
                node.put_host_file(old_artifact.path, OLD_TARBALL)
            node.put_bytes(CHECK_DIR / "munge.key", munge_key, mode=0o400)
            node.start()
        yield Cluster(
            database=database,
            nodes=nodes,
            artifact=artifact,
            database_password=database_password,
            old_artifact=old_artifact,
        )


def put_artifact(container: RunningContainer, artifact: ArtifactUnderTest) -> None:
    """The tarball, its debug companion when it is beside it, and the check's scripts."""
    container.put_host_file(artifact.path, TARBALL)
    if artifact.debug_companion is not None:
        container.put_host_file(artifact.debug_companion, DEBUG_TARBALL)
    container.put_files(node_files())


def install(
    cluster: Cluster,
    report: VerificationReport,
    prefix: PurePosixPath,
    *,
    name: str,
    tarball: PurePosixPath = TARBALL,
) -> bool:
    """Unpack the artifact (`tarball` in the containers; the artifact under test's debug companion with it) at
    `prefix` on every node and run its setup script as a site would; then the controller's configuration for this
    cluster. One check, `name`."""
    artifact = cluster.artifact
    pam_dir = artifact.toolchain.packages.verify.pam_dir.format(multiarch=multiarch_triplet(artifact.arch))
    debug = [str(DEBUG_TARBALL)] if tarball == TARBALL and artifact.debug_companion is not None else []
    with check(report, name) as result:
        for node in NODES:
            role = "controller" if node == CONTROLLER else "node"
            code, output = cluster.nodes[node].run(
                ["sh", str(CHECK_DIR / "node-setup.sh"), str(tarball), str(prefix), role, pam_dir, *debug]
            )
            root = next((line.split(" ", 1)[1] for line in output.splitlines() if line.startswith("root ")), None)
            if code != 0 or root is None:
                result.fail(f"installing the artifact on {node} failed (exit {code})", output.splitlines()[-12:])
                return False
            cluster.root = PurePosixPath(root)
        configure_controller(cluster, result)
        if not result.failed:
            result.ok(
                f"unpacked at {cluster.root} on {', '.join(NODES)}; slurm-factory-setup made the users, directories, "
                f"units and PAM links; {CONF_DIR} only on {CONTROLLER} (the others are configless)"
            )
    return not result.failed


def configure_controller(cluster: Cluster, result: CheckRecorder) -> None:
    """What a site edits in the shipped examples for this cluster; the database's password for slurmdbd."""
    edits = {
        "slurm.conf": lambda text: cluster_slurm_conf(text, CONTROLLER, SLURM_NODES, memory_mb=NODE_MEMORY_MB),
        "slurmdbd.conf": lambda text: cluster_slurmdbd_conf(
            text, CONTROLLER, DATABASE, password=cluster.database_password
        ),
        "cgroup.conf": cluster_cgroup_conf,
    }
    for name, edit in edits.items():
        path = str(CONF_DIR / name)
        text = cluster.read(CONTROLLER, path)
        if text is None:
            result.fail(f"the setup script wrote no {path} on {CONTROLLER}")
            return
        mode, owner = (0o600, "slurm:slurm") if name == "slurmdbd.conf" else (0o644, None)
        cluster.write(CONTROLLER, path, edit(text), mode=mode, owner=owner)


def start_controller(cluster: Cluster, report: VerificationReport, name: str = "cluster: daemons") -> bool:
    """slurmdbd first (it may convert the database), the cluster in the database, then slurmctld, slurmd and
    slurmrestd — each from its unit."""
    with check(report, name) as result:
        services = {"slurmdbd": cluster.start_unit(CONTROLLER, "slurmdbd")}
        answered, detail = cluster.wait_for(lambda: _dbd_answers(cluster), 90, daemon=(CONTROLLER, "slurmdbd"))
        if not answered:
            result.fail("sacctmgr could not reach slurmdbd", [detail, *cluster.log_tails(CONTROLLER, ("slurmdbd",))])
            return False
        code, output = cluster.slurm(CONTROLLER, "bin/sacctmgr", "-i", "add", "cluster", CLUSTER_NAME)
        if code != 0 and "already exists" not in output.lower():
            result.fail(f"sacctmgr add cluster {CLUSTER_NAME} failed (exit {code})", output.splitlines()[-5:])
            return False
        # The REST API listens on the cluster network for the login node's requests (a site's options file).
        cluster.write(CONTROLLER, "/etc/default/slurmrestd", REST_OPTIONS)
        for unit in ("slurmctld", "slurmd", "slurmrestd"):
            services[unit] = cluster.start_unit(CONTROLLER, unit)
        not_ready = [unit for unit, service in services.items()
                     if service.service_type == "notify" and not cluster.wait_ready(CONTROLLER, unit, 45)]  # fmt: skip
        if not_ready:
            result.fail(f"{', '.join(not_ready)} never sent READY=1 to the notify socket (Type=notify)",
                        cluster.log_tails(CONTROLLER, ("slurmctld", "slurmd")))  # fmt: skip
            return False
        up, detail = cluster.wait_for(lambda: _controller_answers(cluster), 45, daemon=(CONTROLLER, "slurmctld"))
        if not up:
            result.fail(f"slurmctld did not answer: {detail}", cluster.log_tails(CONTROLLER, ("slurmctld",)))
            return False
        wrong = _wrong_users(cluster, CONTROLLER, services)
        if wrong:
            result.fail("a daemon does not run as its unit says", wrong)
            return False
        result.ok(
            "slurmdbd, slurmctld, slurmd and slurmrestd started from their units as "
            + ", ".join(f"{unit} ({service.user or 'root'})" for unit, service in services.items())
            + "; slurmctld and slurmd reported READY=1 (Type=notify)"
        )
    return not result.failed


def _dbd_answers(cluster: Cluster) -> tuple[bool, str]:
    code, output = cluster.slurm(CONTROLLER, "bin/sacctmgr", "-n", "-P", "list", "cluster")
    _give_up_on_a_broken_client(code, output)
    return code == 0, output.strip()[-200:]


def _controller_answers(cluster: Cluster) -> tuple[bool, str]:
    code, output = cluster.slurm(CONTROLLER, "bin/scontrol", "ping")
    _give_up_on_a_broken_client(code, output)
    return code == 0 and "UP" in output, output.strip()[-200:]


def _give_up_on_a_broken_client(code: int, output: str) -> None:
    """On the controller, which has its slurm.conf on disk, a client that cannot run or dies `fatal:` (a plugin it
    cannot load) will not recover by waiting; one that cannot reach its daemon yet only prints `error:`."""
    give_up_unless_runnable(code, output)
    fatal = [line for line in output.splitlines() if ": fatal: " in line]
    if code != 0 and fatal:
        raise Hopeless("; ".join([*output.strip().splitlines()[-4:-1], fatal[-1]]))


def _wrong_users(cluster: Cluster, node: str, services: dict[str, ServiceCommand]) -> list[str]:
    """Each daemon's process user against its unit's `User=` (root when it has none)."""
    wrong = []
    for unit, service in services.items():
        expected = service.user or "root"
        found = cluster.process_user(node, unit)
        if found != expected:
            wrong.append(f"{node}: {unit} runs as {found or 'nothing (not running)'}, its unit says {expected}")
            wrong += cluster.log_tails(node, (unit,), lines=6)
    return wrong


def node_states(cluster: Cluster, from_node: str) -> tuple[dict[str, str], str]:
    """Each node's state as `sinfo` on `from_node` sees it (`Hopeless` when sinfo cannot run there)."""
    code, output = cluster.slurm(from_node, "bin/sinfo", "-h", "-N", "-o", "%N %T")
    give_up_unless_runnable(code, output)
    states = {}
    for line in output.splitlines():
        parts = line.split()
        if code == 0 and len(parts) == 2:
            states[parts[0]] = parts[1]
    return states, output.strip()


def start_configless(
    cluster: Cluster,
    report: VerificationReport,
    names: tuple[str, str] = ("cluster: configless node", "cluster: login node (sackd)"),
) -> bool:
    """The compute node's slurmd and the login node's sackd with `--conf-server` only (their options files): no
    slurm.conf on either; both fetch it from slurmctld, the node registers, clients on the login node work."""
    conf_server = f"{CONTROLLER}:{CONTROLLER_PORT}"
    with check(report, names[0]) as result:
        cluster.write(COMPUTE, "/etc/default/slurmd", f"SLURMD_OPTIONS=--conf-server {conf_server}\n")
        service = cluster.start_unit(COMPUTE, "slurmd")
        if "--conf-server" not in service.argv:
            result.fail(
                f"slurmd on {COMPUTE} started without --conf-server: `{' '.join(service.argv)}` from its unit "
                "(the options file's SLURMD_OPTIONS never reach it), and there are no DNS SRV records to find one"
            )
            return False
        idle, detail = cluster.wait_for(
            lambda: _idle(cluster, CONTROLLER, SLURM_NODES), IDLE_TIMEOUT, daemon=(COMPUTE, "slurmd")
        )
        on_disk = [path for path in ("/etc/slurm/slurm.conf", str(CONF_DIR / "slurm.conf"))
                   if cluster.read(COMPUTE, path) is not None]  # fmt: skip
        fetched = cluster.read(COMPUTE, "/run/slurm/conf/slurm.conf")
        if on_disk:
            result.fail(f"{COMPUTE} has a slurm.conf on disk ({', '.join(on_disk)}): it is not configless")
        elif not cluster.wait_ready(COMPUTE, "slurmd", 30):
            result.fail(f"slurmd on {COMPUTE} never sent READY=1", cluster.log_tails(COMPUTE, ("slurmd",)))
        elif not idle:
            result.fail(f"{COMPUTE} did not register: {detail}", cluster.log_tails(COMPUTE, ("slurmd",)))
        elif fetched is None or f"ClusterName={CLUSTER_NAME}" not in fetched:
            result.fail(f"{COMPUTE} has no fetched configuration in /run/slurm/conf")
        else:
            result.ok(
                f"{COMPUTE}: `{' '.join(service.argv[1:])}` from its unit, no slurm.conf on disk, configuration "
                f"fetched into /run/slurm/conf; {', '.join(SLURM_NODES)} idle"
            )
    if result.failed:
        return False
    with check(report, names[1]) as result:
        cluster.write(LOGIN, "/etc/default/sackd", f"SACKD_OPTIONS=--conf-server {conf_server}\n")
        service = cluster.start_unit(LOGIN, "sackd")
        if "--conf-server" not in service.argv:
            result.fail(f"sackd on {LOGIN} started without --conf-server: `{' '.join(service.argv)}` from its unit")
            return False
        seen, detail = cluster.wait_for(
            lambda: _idle(cluster, LOGIN, SLURM_NODES), IDLE_TIMEOUT, daemon=(LOGIN, "sackd")
        )
        user = cluster.process_user(LOGIN, "sackd")
        if not cluster.wait_ready(LOGIN, "sackd", 30):
            result.fail(f"sackd on {LOGIN} never sent READY=1", cluster.log_tails(LOGIN, ("sackd",)))
        elif not seen:
            result.fail(f"sinfo on {LOGIN} (no slurm.conf, sackd's copy) did not see the nodes: {detail}")
        elif user != (service.user or "root"):
            result.fail(f"sackd runs as {user}, its unit says {service.user}")
        else:
            result.ok(f"sackd as {user} fetched the configuration; sinfo on {LOGIN} sees {', '.join(SLURM_NODES)}")
    return not result.failed


def _idle(cluster: Cluster, from_node: str, nodes: tuple[str, ...]) -> tuple[bool, str]:
    states, output = node_states(cluster, from_node)
    return all(states.get(node) == "idle" for node in nodes), output or "no answer"


def job_id(output: str) -> str | None:
    """The job id `sbatch --parsable` printed (`123` or `123;cluster`)."""
    match = re.search(r"^(\d+)(?:;\S+)?\s*$", output.strip(), flags=re.MULTILINE)
    return match[1] if match else None
