"""Helpers of the end-to-end tests: run the real CLI in a subprocess, record measurements, repack artifacts."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
from elftools.elf.elffile import ELFFile

from slurm_factory.docker_engine import PROJECT_LABEL

ARTIFACT = "slurm-24.11-trixie-software.tar.gz"
ROOT = "slurm-24.11.5-trixie"


@dataclass
class Build:
    home: Path
    project: str
    result: dict[str, Any]
    seconds: float
    log_text: str
    output: str

    @property
    def artifact(self) -> Path:
        """The stored tarball (`builds/by-id/<id>/…`): the contract's name may point at a later build."""
        return Path(self.result["stored"])

    @property
    def link(self) -> Path:
        """`builds/<contract name>`: a link to the newest artifact of the request."""
        return Path(self.result["artifact"])


def cli_environment(home: Path, project: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The CLI's environment: no GPG secret and no AWS setting of the machine, plus what a test adds."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SLURM_FACTORY_GPG", "AWS_"))}
    return {
        **env,
        "SLURM_FACTORY_HOME": str(home),
        "IF_PROJECT_NAME": project,
        "SPACK_JOBS": "2",
        "AWS_EC2_METADATA_DISABLED": "true",
        **(extra or {}),
    }


def run_cli(
    home: Path, project: str, *args: str, env: dict[str, str] | None = None, timeout: float = 3600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slurm_factory", *args],
        env=cli_environment(home, project, env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def native_build(
    home: Path, project: str, source: Path, *extra: str, env: dict[str, str] | None = None, timeout: float = 3600
) -> Build:
    started = time.monotonic()
    done = run_cli(
        home,
        project,
        "build-slurm",
        "--engine",
        "native",
        "--toolchain",
        "trixie",
        "--slurm-version",
        "24.11.5",
        "--slurm-source",
        str(source),
        "--json",
        *extra,
        env=env,
        timeout=timeout,
    )
    seconds = time.monotonic() - started
    assert done.returncode == 0, f"build failed:\n{done.stderr[-4000:]}\n{done.stdout[-4000:]}"
    result = json.loads(done.stdout)
    log_text = Path(result["log"]).read_text(encoding="utf-8") if result["log"] else ""
    return Build(home, project, result, seconds, log_text, done.stdout + done.stderr)


MEASUREMENTS: list[str] = []


def report_measurement(line: str) -> None:
    """Measured numbers are printed in the test run's summary (and so the CI log), never asserted."""
    MEASUREMENTS.append(line)


def remove_project(client: docker.DockerClient, project: str) -> None:
    label = {"label": f"{PROJECT_LABEL}={project}"}
    for container in client.containers.list(all=True, filters=label):
        container.remove(force=True)
    for network in client.networks.list(filters=label):
        network.remove()
    for image in client.images.list(filters=label):
        client.images.remove(image.id, force=True)


def repack(source: Path, destination: Path, scratch: Path, change: Any) -> Path:
    """Unpack an artifact, let `change(root)` alter the tree, pack it again (fast compression)."""
    with tarfile.open(source, "r:gz") as archive:
        archive.extractall(scratch, filter="tar")
    change(scratch / ROOT)
    with tarfile.open(destination, "w:gz", compresslevel=1) as archive:
        archive.add(scratch / ROOT, arcname=ROOT)
    return destination


@dataclass
class ThrowawayKey:
    """A passphrase-protected signing key made for one test session, given to the CLI only through files."""

    fingerprint: str
    passphrase: str
    armored_secret: str
    binary_secret: bytes
    key_file: Path
    passphrase_file: Path


# Public, and on the argv of every `gpg --quick-gen-key` that makes a throwaway key (of any test on the machine).
THROWAWAY_USER_ID = "slurm-factory e2e <e2e@example.org>"


def make_throwaway_key(directory: Path) -> ThrowawayKey:
    home = directory / "gnupg"
    home.mkdir(mode=0o700)
    passphrase = f"pp-{os.urandom(12).hex()}"
    gpg = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0"]
    try:
        subprocess.run(
            [*gpg, "--quick-gen-key", THROWAWAY_USER_ID, "ed25519", "sign", "1d"],
            input=passphrase,
            text=True,
            check=True,
            capture_output=True,
        )
        listing = subprocess.run(
            ["gpg", "--homedir", str(home), "--with-colons", "--list-secret-keys"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr"))
        armored = subprocess.run(
            [*gpg, "--armor", "--export-secret-keys", fingerprint],
            input=passphrase,
            text=True,
            check=True,
            capture_output=True,
        ).stdout
        binary = subprocess.run(
            [*gpg, "--export-secret-keys", fingerprint], input=passphrase.encode(), check=True, capture_output=True
        ).stdout
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)
    key_file = directory / "signing-key.asc"
    key_file.write_text(armored)
    passphrase_file = directory / "passphrase"
    passphrase_file.write_text(passphrase + "\n")
    return ThrowawayKey(fingerprint, passphrase, armored, binary, key_file, passphrase_file)


class SecretScanner:
    """Counts appearances of the passphrase, of any 16-byte slice of the private key (armored body or binary) and of
    any other secret given whole (an S3 secret access key)."""

    WIDTH = 16

    def __init__(self, key: ThrowawayKey, others: tuple[str, ...] = ()) -> None:
        self.others = tuple(secret.encode() for secret in others)
        body = "".join(
            line
            for line in key.armored_secret.splitlines()
            if line and not line.startswith(("-----", "=")) and ":" not in line
        ).encode()
        self.passphrase = key.passphrase.encode()
        self.windows = {
            material[i : i + self.WIDTH]
            for material in (body, key.binary_secret)
            for i in range(len(material) - self.WIDTH + 1)
        } - self._public_windows()

    @classmethod
    def _public_windows(cls) -> set[bytes]:
        """The binary key packet carries the user id, which is public (and in other processes' argv)."""
        user_id = THROWAWAY_USER_ID.encode()
        return {user_id[i : i + cls.WIDTH] for i in range(len(user_id) - cls.WIDTH + 1)}

    def count(self, haystack: bytes) -> int:
        slices = sum(1 for i in range(len(haystack) - self.WIDTH + 1) if haystack[i : i + self.WIDTH] in self.windows)
        return slices + haystack.count(self.passphrase) + sum(haystack.count(secret) for secret in self.others)


class LeakWatch:
    """While a build runs, scan every process's argv and environment and every container of the project for
    secrets; afterwards `finish()` adds the project's images (history and config)."""

    def __init__(self, scanner: SecretScanner, client: docker.DockerClient, project: str) -> None:
        self._scanner = scanner
        self._client = client
        self._label: dict[str, Any] = {"label": f"{PROJECT_LABEL}={project}"}
        self.findings: list[str] = []
        self.polls = 0
        self.containers_seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> LeakWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _scan(self, what: str, data: bytes) -> None:
        hits = self._scanner.count(data)
        if hits:
            self.findings.append(f"{what}: {hits} hit(s)")

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.polls += 1
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                for part in ("cmdline", "environ"):
                    try:
                        data = (proc / part).read_bytes()
                    except OSError:
                        continue
                    self._scan(f"/proc/{proc.name}/{part}", data)
            try:
                for container in self._client.containers.list(all=True, filters=self._label):
                    self.containers_seen.add(str(container.name))
                    self._scan(f"docker inspect {container.name}", json.dumps(container.attrs).encode())
            except docker.errors.DockerException:
                pass  # a container vanished between list and inspect
            self._stop.wait(0.2)

    def scan_images(self) -> int:
        images = self._client.images.list(filters=self._label)
        for image in images:
            name = ", ".join(image.tags) or str(image.short_id)
            self._scan(f"docker history {name}", json.dumps(image.history()).encode())
            self._scan(f"docker image inspect {name}", json.dumps(image.attrs).encode())
        return len(images)

    def scan_file(self, path: Path) -> None:
        self._scan(str(path), path.read_bytes())


def elf_machines(tarball: Path) -> dict[str, str]:
    """The ELF machine type (`EM_AARCH64`, `EM_X86_64`) of every ELF file in an artifact, by member name."""
    machines = {}
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            stream = archive.extractfile(member) if member.isfile() else None
            data = stream.read() if stream is not None else b""
            if data.startswith(b"\x7fELF"):
                machines[member.name] = str(ELFFile(io.BytesIO(data)).header["e_machine"])
    return machines
