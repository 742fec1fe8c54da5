"""The test environment's Docker engines and their state, in one place: `scripts/testenv` (which keeps apt,
debootstrap and `docker import` in bash), the distributed tests and the fault tests all ask this module.

State lives in one directory (`state_dir()`: $SLURM_FACTORY_TESTENV_DIR, else $XDG_CACHE_HOME/slurm-factory-testenv,
else ~/.cache/slurm-factory-testenv):

    dockerd.pid, dockerd.log      the default engine, when testenv started it (and so may stop it)
    engines/NAME/                 an extra engine NAME: docker.sock, daemon.json, dockerd.pid, dockerd.log, lock,
                                  data/ (--data-root) and exec/ (--exec-root, with its managed containerd)

Two dockerd on one host must not share anything that either writes: each extra engine has its own API socket,
data root, exec root (its containerd's state and socket, libnetwork, netns) and pid file, and an empty daemon.json so
that a host /etc/docker/daemon.json cannot point it at the default engine's. Networking is the default engine's: no
iptables, no masquerading, no bridge (containers use --network host or none).

Only the standard library: the script runs this with the machine's python3 before any virtualenv exists.

    python3 -m tests.testenv docker-up | docker-down
    python3 -m tests.testenv engine NAME [IMAGE...] | engine-host NAME | engine-down NAME [--purge]
    python3 -m tests.testenv engines-down [--purge]
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ENGINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
# Linux's limit for a unix socket path (sun_path without its terminating NUL).
MAX_SOCKET_PATH = 107
DOCKERD_FLAGS = ("--iptables=false", "--ip-masq=false", "--bridge=none")
# The default engine's own pid files: a killed dockerd leaves them behind and a new one refuses to start.
DEFAULT_PIDFILES = (
    (Path("/var/run/docker.pid"), "dockerd"),
    (Path("/var/run/docker/containerd/containerd.pid"), "containerd"),
)
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
# Copying the base images into a cold engine (seconds each, measured); a hung `docker load` ends here.
COPY_TIMEOUT = 600.0
ANSWER_TIMEOUT = 10


class TestenvError(Exception):
    """What the test environment cannot do, said in one line (the CLI exits 1 with it, 2 for bad usage)."""

    __test__ = False  # not a test class, whatever pytest's naming rules say

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


def log(message: str) -> None:
    print(f"[testenv] {message}", file=sys.stderr, flush=True)


def state_dir() -> Path:
    explicit = os.environ.get("SLURM_FACTORY_TESTENV_DIR")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "slurm-factory-testenv"


def _as_root(argv: Sequence[str]) -> list[str]:
    return list(argv) if os.geteuid() == 0 else ["sudo", *argv]


def process_alive(pid: int) -> bool:
    """Running, and not a zombie that nobody has reaped yet (a killed dockerd is one for a while)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def live_pid(pidfile: Path, command: str) -> int | None:
    """The pid in `pidfile` when that process is alive and is `command` (pid files outlive their process, and pids
    are reused)."""
    try:
        text = pidfile.read_text().strip()
    except OSError:
        return None
    if not text.isdigit():
        return None
    pid = int(text)
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None
    return pid if comm == command and process_alive(pid) else None


def _remove_stale_pidfiles(pidfiles: Sequence[tuple[Path, str]]) -> None:
    for pidfile, command in pidfiles:
        if pidfile.exists() and live_pid(pidfile, command) is None:
            log(f"removing the stale {pidfile} (its {command} is gone)")
            subprocess.run(_as_root(["rm", "-f", str(pidfile)]), check=False)


def answers(docker_host: str | None = None) -> bool:
    """A Docker engine answers on `docker_host` (None: the default one)."""
    argv = ["docker", *(["-H", docker_host] if docker_host else []), "version", "--format", "{{.Server.Version}}"]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=ANSWER_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _wait_until_answering(docker_host: str | None, log_file: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if answers(docker_host):
            log(f"{what} is up")
            return
        time.sleep(0.2)
    tail = log_file.read_text(errors="replace").splitlines()[-20:] if log_file.is_file() else []
    raise TestenvError(f"{what} did not come up; see {log_file}" + "".join(f"\n  {line}" for line in tail))


def _spawn_dockerd(arguments: Sequence[str], log_file: Path) -> int:
    """dockerd in its own session (it outlives this process), its output in `log_file`; its pid."""
    if shutil.which("dockerd") is None:
        raise TestenvError("dockerd is not installed: scripts/testenv up installs Debian's docker.io")
    with log_file.open("ab") as output:
        process = subprocess.Popen(
            _as_root(["dockerd", *arguments]),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    return process.pid


# The default engine.


def default_pidfile() -> Path:
    return state_dir() / "dockerd.pid"


def started_dockerd_pid() -> int | None:
    """The default engine's dockerd when testenv started it and it still runs: the only one a test may kill."""
    return live_pid(default_pidfile(), "dockerd")


def docker_up() -> None:
    """The default engine answers: the running one, or a dockerd started here (and recorded, for `docker_down`)."""
    if answers():
        log("docker engine already running")
        return
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    _remove_stale_pidfiles(DEFAULT_PIDFILES)
    log("starting dockerd")
    spawned = _spawn_dockerd(DOCKERD_FLAGS, directory / "dockerd.log")
    default_pidfile().write_text(f"{spawned}\n")
    _wait_until_answering(None, directory / "dockerd.log", "dockerd")
    # Under sudo the spawned pid is sudo's: record the daemon's own, from the pid file it writes.
    pid = live_pid(DEFAULT_PIDFILES[0][0], "dockerd")
    if pid is not None:
        default_pidfile().write_text(f"{pid}\n")


def docker_down() -> None:
    """Stop the default engine if testenv started it; leave one that something else started."""
    pidfile = default_pidfile()
    if not pidfile.exists():
        log("dockerd was not started by testenv; leaving it running")
        return
    pid = live_pid(pidfile, "dockerd")
    if pid is not None:
        log(f"stopping dockerd (pid {pid})")
        _terminate(pid, STOP_TIMEOUT)
    pidfile.unlink(missing_ok=True)


def _terminate(pid: int, seconds: float) -> bool:
    """SIGTERM `pid` and wait up to `seconds` for it to end; whether it did."""
    subprocess.run(_as_root(["kill", "-TERM", str(pid)]), capture_output=True, check=False)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return True
        time.sleep(0.2)
    return not process_alive(pid)


# Extra engines.


@dataclass(frozen=True)
class ExtraEngine:
    name: str
    directory: Path

    @property
    def socket(self) -> Path:
        return self.directory / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.directory / "dockerd.pid"

    @property
    def log_file(self) -> Path:
        return self.directory / "dockerd.log"

    @property
    def data_root(self) -> Path:
        return self.directory / "data"

    @property
    def exec_root(self) -> Path:
        return self.directory / "exec"

    @property
    def containerd_pidfile(self) -> Path:
        return self.exec_root / "containerd" / "containerd.pid"

    def pid(self) -> int | None:
        return live_pid(self.pidfile, "dockerd")

    def answers(self) -> bool:
        return answers(self.docker_host)


def extra_engine(name: str) -> ExtraEngine:
    if not ENGINE_NAME.fullmatch(name):
        raise TestenvError(f"an engine name is 1-32 letters, digits, '.', '_' or '-' (got {name!r})", usage=True)
    return ExtraEngine(name, state_dir() / "engines" / name)


def extra_engines() -> list[ExtraEngine]:
    """Every extra engine that has a directory (running or not)."""
    root = state_dir() / "engines"
    if not root.is_dir():
        return []
    return [extra_engine(path.name) for path in sorted(root.iterdir()) if path.is_dir()]


@contextlib.contextmanager
def _locked(engine: ExtraEngine) -> Iterator[None]:
    """One process at a time starts or fills an engine (two tests may ask for it at once)."""
    engine.directory.mkdir(parents=True, exist_ok=True)
    with (engine.directory / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _start(engine: ExtraEngine) -> None:
    if engine.answers():
        log(f"engine {engine.name} already running")
        return
    longest = engine.exec_root / "containerd" / "containerd.sock.ttrpc"
    if len(str(longest)) > MAX_SOCKET_PATH:
        raise TestenvError(
            f"{state_dir()} is too long a path for the engine's unix sockets ({longest}); "
            "set a shorter SLURM_FACTORY_TESTENV_DIR"
        )
    engine.data_root.mkdir(parents=True, exist_ok=True)
    engine.exec_root.mkdir(parents=True, exist_ok=True)
    _remove_stale_pidfiles(((engine.pidfile, "dockerd"), (engine.containerd_pidfile, "containerd")))
    if engine.pid() is not None:
        log(f"engine {engine.name}: dockerd (pid {engine.pid()}) is running but its socket does not answer; waiting")
    else:
        (engine.directory / "daemon.json").write_text("{}\n")
        log(f"starting engine {engine.name}")
        _spawn_dockerd(
            [
                "--config-file", str(engine.directory / "daemon.json"), "--host", engine.docker_host,
                "--data-root", str(engine.data_root), "--exec-root", str(engine.exec_root),
                "--pidfile", str(engine.pidfile), *DOCKERD_FLAGS,
            ],
            engine.log_file,
        )  # fmt: skip
    try:
        _wait_until_answering(engine.docker_host, engine.log_file, f"engine {engine.name}")
    except TestenvError:
        stop_engine(engine)
        raise


def _image_id(image: str, docker_host: str | None = None) -> str | None:
    argv = ["docker", *(["-H", docker_host] if docker_host else []), "image", "inspect", "--format", "{{.Id}}", image]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def default_base_images() -> list[str]:
    """Every debian:* and arm64v8/debian:* tag of the default engine (what `up` and `arm64` import)."""
    images: list[str] = []
    for repository in ("debian", "arm64v8/debian"):
        listed = subprocess.run(
            ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", repository],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        images += [line for line in listed.stdout.split() if not line.endswith(":<none>")]
    return images


def copy_images(engine: ExtraEngine, images: Sequence[str]) -> None:
    """Base images come from the default engine, never from a registry: `docker save | docker load` keeps their ids
    (the engine's debian:trixie is the default engine's, byte for byte). One it already has is not copied again,
    so a kept data root starts warm."""
    wanted = list(images) or default_base_images()
    if not wanted:
        raise TestenvError("the default engine has no debian:* image; run scripts/testenv up first")
    missing = []
    for image in wanted:
        want = _image_id(image)
        if want is None:
            raise TestenvError(f"the default engine has no {image}; scripts/testenv up (or arm64) makes it")
        if _image_id(image, engine.docker_host) != want:
            missing.append(image)
    if not missing:
        log(f"engine {engine.name} has {' '.join(wanted)}")
        return
    log(f"copying {' '.join(missing)} into engine {engine.name}")
    save = subprocess.Popen(["docker", "save", *missing], stdout=subprocess.PIPE)
    try:
        load = subprocess.run(
            ["docker", "-H", engine.docker_host, "load"], stdin=save.stdout, capture_output=True, text=True,
            timeout=COPY_TIMEOUT, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        save.kill()
        raise TestenvError(
            f"copying {' '.join(missing)} into engine {engine.name} took over {COPY_TIMEOUT:.0f} s"
        ) from None
    finally:
        if save.stdout is not None:
            save.stdout.close()
    if save.wait() != 0 or load.returncode != 0:
        raise TestenvError(f"copying {' '.join(missing)} into engine {engine.name} failed: {load.stderr.strip()}")


def ensure_engine(name: str, images: Sequence[str] = ()) -> ExtraEngine:
    """The extra engine `name` running, with `images` (default: the default engine's base images); idempotent."""
    engine = extra_engine(name)
    if not answers():
        raise TestenvError(
            "the default Docker engine does not answer: extra engines copy their base images from it; "
            "run scripts/testenv up"
        )
    with _locked(engine):
        _start(engine)
        copy_images(engine, images)
    return engine


def _processes_naming(path: Path) -> list[int]:
    """The processes whose command line names something below `path` (an engine's containerd and shims)."""
    prefix = f"{path}/".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if prefix in (entry / "cmdline").read_bytes() and process_alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def _unescape_mount_path(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match[1], 8)), field)


def mounts_below(path: Path, *, mountinfo: Path = Path("/proc/self/mountinfo")) -> list[Path]:
    """What is mounted below `path`, deepest first."""
    prefix = f"{path}/"
    targets = []
    for line in mountinfo.read_text().splitlines():
        target = _unescape_mount_path(line.split()[4])
        if target.startswith(prefix):
            targets.append(Path(target))
    return sorted(targets, key=lambda target: len(target.parts), reverse=True)


def stop_engine(engine: ExtraEngine) -> None:
    """SIGTERM lets dockerd stop its containers and its containerd; what still runs after 30 s is killed: dockerd,
    then every process naming the engine's exec root. dockerd leaves its default network namespace bind-mounted
    (exec/netns/default): nothing of a stopped engine stays mounted."""
    pid = engine.pid()
    stopped = True
    if pid is not None:
        log(f"stopping engine {engine.name} (dockerd pid {pid})")
        stopped = _terminate(pid, STOP_TIMEOUT)
    leftovers = ([] if stopped or pid is None else [pid]) + _processes_naming(engine.exec_root)
    if leftovers:
        log(f"engine {engine.name}: killing what is left of it: {' '.join(map(str, leftovers))}")
        subprocess.run(_as_root(["kill", "-KILL", *map(str, leftovers)]), capture_output=True, check=False)
    subprocess.run(_as_root(["rm", "-f", str(engine.pidfile), str(engine.containerd_pidfile)]), check=False)
    for target in mounts_below(engine.directory):
        if subprocess.run(_as_root(["umount", str(target)]), capture_output=True, check=False).returncode != 0:
            lazy = subprocess.run(_as_root(["umount", "-l", str(target)]), capture_output=True, check=False)
            if lazy.returncode != 0:
                log(f"cannot unmount {target}")


def purge_engine(engine: ExtraEngine) -> None:
    if not engine.directory.is_dir():
        return
    if mounts_below(engine.directory):
        raise TestenvError(f"not removing {engine.directory}: something is still mounted below it")
    log(f"removing engine {engine.name}'s data ({engine.directory})")
    subprocess.run(_as_root(["rm", "-rf", str(engine.directory)]), check=True)


def engine_down(name: str, *, purge: bool = False) -> None:
    engine = extra_engine(name)
    stop_engine(engine)
    if purge:
        purge_engine(engine)


def engines_down(*, purge: bool = False) -> None:
    for engine in extra_engines():
        engine_down(engine.name, purge=purge)


# The script's commands.

USAGE = (
    "usage: python3 -m tests.testenv docker-up | docker-down | engine NAME [IMAGE...] | engine-host NAME"
    " | engine-down NAME [--purge] | engines-down [--purge]"
)


def _purge_flag(arguments: Sequence[str]) -> bool:
    if list(arguments) not in ([], ["--purge"]):
        raise TestenvError(USAGE, usage=True)
    return bool(arguments)


def run(argv: Sequence[str]) -> None:
    command, *arguments = argv or [""]
    if command == "docker-up" and not arguments:
        docker_up()
    elif command == "docker-down" and not arguments:
        docker_down()
    elif command == "engine" and arguments:
        engine = ensure_engine(arguments[0], arguments[1:])
        print(f"DOCKER_HOST={engine.docker_host}")
    elif command == "engine-host" and len(arguments) == 1:
        print(f"DOCKER_HOST={extra_engine(arguments[0]).docker_host}")
    elif command == "engine-down" and arguments:
        engine_down(arguments[0], purge=_purge_flag(arguments[1:]))
    elif command == "engines-down":
        engines_down(purge=_purge_flag(arguments))
    else:
        raise TestenvError(USAGE, usage=True)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        run(sys.argv[1:] if argv is None else argv)
    except TestenvError as error:
        log(str(error))
        return 2 if error.usage else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
