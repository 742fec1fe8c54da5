"""Throwaway GnuPG keys for tests that sign for real: generated once per session with `gpg --quick-gen-key`
(ed25519) in a temporary home that is removed afterwards, exported in every form the options accept."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr


@dataclass(frozen=True)
class Key:
    """One throwaway key, exported in every form the options accept."""

    fingerprint: str
    passphrase: str | None
    armored_secret: str
    binary_secret: bytes
    armored_public: str
    binary_public: bytes
    secret_file: Path
    binary_secret_file: Path
    public_file: Path
    binary_public_file: Path
    passphrase_file: Path

    @property
    def long_id(self) -> str:
        return self.fingerprint[-16:]

    def secret_passphrase(self) -> SecretStr | None:
        return SecretStr(self.passphrase) if self.passphrase is not None else None


@dataclass(frozen=True)
class Keys:
    protected: Key
    unprotected: Key
    expired: Key
    certify_only: Key
    unrelated: Key


def gpg_command(home: Path, *args: str, passphrase: str = "") -> list[str]:
    return [
        "gpg",
        "--homedir",
        str(home),
        "--batch",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        passphrase,
        *args,
    ]


def run_gpg(command: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(command, check=True, capture_output=True, timeout=120)


def kill_agent(home: Path) -> None:
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)


def generate_key(home: Path, out: Path, name: str, usage: str, passphrase: str | None, *extra: str) -> Key:
    """`gpg --quick-gen-key` an ed25519 key in `home` and export it into files under `out`."""
    pp = passphrase or ""
    expiry = "1d" if extra else "1y"
    uid = f"sf-test {name} <{name}@example.org>"
    created = run_gpg(
        gpg_command(home, *extra, "--status-fd", "1", "--quick-gen-key", uid, "ed25519", usage, expiry, passphrase=pp)
    ).stdout.decode()
    fingerprint = next(line.split()[-1] for line in created.splitlines() if line.startswith("[GNUPG:] KEY_CREATED"))
    armored_secret = run_gpg(gpg_command(home, "--armor", "--export-secret-keys", fingerprint, passphrase=pp)).stdout
    binary_secret = run_gpg(gpg_command(home, "--export-secret-keys", fingerprint, passphrase=pp)).stdout
    armored_public = run_gpg(gpg_command(home, "--armor", "--export", fingerprint)).stdout
    binary_public = run_gpg(gpg_command(home, "--export", fingerprint)).stdout
    assert armored_secret.startswith(b"-----BEGIN PGP PRIVATE KEY BLOCK-----")
    assert armored_public.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    files = {}
    for suffix, content in {
        "sec.asc": armored_secret,
        "sec.gpg": binary_secret,
        "pub.asc": armored_public,
        "pub.gpg": binary_public,
        "passphrase": (pp + "\n").encode(),
    }.items():
        path = out / f"{name}.{suffix}"
        path.write_bytes(content)
        files[suffix] = path
    return Key(
        fingerprint=fingerprint,
        passphrase=passphrase,
        armored_secret=armored_secret.decode(),
        binary_secret=binary_secret,
        armored_public=armored_public.decode(),
        binary_public=binary_public,
        secret_file=files["sec.asc"],
        binary_secret_file=files["sec.gpg"],
        public_file=files["pub.asc"],
        binary_public_file=files["pub.gpg"],
        passphrase_file=files["passphrase"],
    )


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    """Five throwaway keys generated once per session in a temporary GNUPGHOME (0700) that is removed afterwards."""
    out = tmp_path_factory.mktemp("keys")
    # A short home: gpg-agent's socket path must fit in sockaddr_un.
    home = Path(tempfile.mkdtemp(prefix="sf-keygen-", dir="/tmp"))
    home.chmod(0o700)
    try:
        generated = Keys(
            protected=generate_key(home, out, "protected", "sign", f"pp-{os.urandom(8).hex()}"),
            unprotected=generate_key(home, out, "unprotected", "sign", None),
            expired=generate_key(home, out, "expired", "sign", None, "--faked-system-time", "20200101T000000!"),
            certify_only=generate_key(home, out, "certonly", "cert", None),
            unrelated=generate_key(home, out, "unrelated", "sign", None),
        )
    finally:
        kill_agent(home)
    try:
        yield generated
    finally:
        shutil.rmtree(home, ignore_errors=True)
