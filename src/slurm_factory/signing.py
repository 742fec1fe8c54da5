"""Signing with GnuPG: an ephemeral keyring for an imported key, checked before any container starts.

The private key and the passphrase reach `gpg` only through its standard input (python-gnupg writes them there);
never through argv, the environment or a file outside the temporary GNUPGHOME, which is deleted afterwards — also
on failure or Ctrl-C. Without `--gpg-private-key` the user's own keyring signs.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import gnupg
from pydantic import SecretBytes, SecretStr

from slurm_factory.exceptions import ConfigurationError, SlurmFactoryError, quoted
from slurm_factory.secret_input import child_environment

# python-gnupg logs the status lines of every call at DEBUG (keep them, and anything near a secret, out of -v output)
# and a failed signature as a WARNING ("potential problem: FAILURE: sign 67108875") before our own one-line error.
logging.getLogger("gnupg").setLevel(logging.ERROR)

_PROBE = b"slurm-factory signing probe\n"
_GPG_ERR_BAD_PASSPHRASE = 11
# Names of the secret files on a build container's tmpfs (see templates/spack/_signing.sh.j2).
SECRET_KEY_FILE = "signing-key.asc"
SECRET_PASSPHRASE_FILE = "passphrase"


def remove_keyring(home: Path) -> None:
    """Stop the agent a temporary GNUPGHOME started, then delete the directory with every key in it."""
    gpgconf = shutil.which("gpgconf")
    if gpgconf:
        subprocess.run(
            [gpgconf, "--homedir", str(home), "--kill", "all"],
            check=False,
            capture_output=True,
            env=child_environment(),
        )
    shutil.rmtree(home, ignore_errors=True)


class SigningError(SlurmFactoryError):
    """Signing failed after the key was accepted (exit 1)."""


# gpg-agent puts its sockets in the GnuPG home; a Unix socket path has at most 107 bytes.
_SOCKET_ROOM = 60


def _short_temporary_directory() -> str:
    """The temporary directory, unless its path leaves gpg-agent's sockets too little room: then /tmp."""
    directory = tempfile.gettempdir()
    return directory if len(directory) <= _SOCKET_ROOM else "/tmp"


def user_keyring_home() -> str | None:
    """The user's GnuPG home when no private key is given: GNUPGHOME if set (it must be a directory), else gpg's
    default (~/.gnupg)."""
    configured = os.environ.get("GNUPGHOME")
    if not configured:
        return None
    if not os.path.isdir(configured):
        raise ConfigurationError(
            f"GNUPGHOME {quoted(configured)} is not a directory: the signing key is looked up there",
            hint="point GNUPGHOME at your keyring, unset it, or give --gpg-private-key",
        )
    return configured


class SigningRequest(Protocol):
    """What a request that signs carries (`BuildRequest`, `CompilerRequest`)."""

    @property
    def signing_key(self) -> str | None: ...

    @property
    def gpg_private_key(self) -> SecretBytes | None: ...

    @property
    def gpg_passphrase(self) -> SecretStr | None: ...


def request_signing_key(request: SigningRequest) -> SigningKey:
    """The request's key, to be entered (`with`) before anything is built or signed."""
    if request.signing_key is None:
        raise ConfigurationError("signing was asked for without --signing-key")
    return SigningKey(request.signing_key, request.gpg_private_key, request.gpg_passphrase)


class SigningKey:
    """A usable secret key for `key_id`: found, able to sign, not expired or revoked, passphrase right.

    Use as a context manager; `__enter__` does every check (a test signature included) so a bad key fails with
    exit 2 before the build starts.
    """

    def __init__(
        self, key_id: str, private_key: SecretBytes | None = None, passphrase: SecretStr | None = None
    ) -> None:
        self.key_id = key_id.upper()
        self._private_key = private_key
        self._passphrase = passphrase
        self._home: Path | None = None
        self._gpg: gnupg.GPG | None = None
        self.fingerprint = ""

    def __enter__(self) -> SigningKey:
        try:
            if self._private_key is not None:
                self._home = Path(tempfile.mkdtemp(prefix="slurm-factory-gnupg-", dir=_short_temporary_directory()))
                self._home.chmod(0o700)
                self._gpg = gnupg.GPG(gnupghome=str(self._home), env=child_environment())
                self._import()
            else:
                self._gpg = gnupg.GPG(gnupghome=user_keyring_home(), env=child_environment())
            self.fingerprint = self._find_signing_key()
            self._probe()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    @property
    def gpg(self) -> gnupg.GPG:
        if self._gpg is None:
            raise RuntimeError("SigningKey used outside its `with` block")
        return self._gpg

    def _passphrase_text(self) -> str | None:
        if self._passphrase is None:
            return None
        text = self._passphrase.get_secret_value()
        if "\n" in text or "\r" in text:  # gpg reads the passphrase as one line from its standard input
            raise ConfigurationError("--gpg-passphrase: a passphrase cannot contain a line break")
        return text

    def _import(self) -> None:
        assert self._private_key is not None
        result = self.gpg.import_keys(self._private_key.get_secret_value())
        if not result.sec_imported and not any("secret" in str(entry.get("text", "")) for entry in result.results):
            raise ConfigurationError(
                "--gpg-private-key: no secret key could be imported from it",
                hint="export it with `gpg --export-secret-keys --armor KEYID | base64 -w0`",
            )

    def _matches(self, key: dict[str, Any]) -> bool:
        fingerprints = [str(key.get("fingerprint", ""))] + [
            str(sub[2] if len(sub) > 2 else "") for sub in key.get("subkeys", [])
        ]
        return any(fingerprint.upper().endswith(self.key_id) for fingerprint in fingerprints if fingerprint)

    def _find_signing_key(self) -> str:
        secret_keys = [key for key in self.gpg.list_keys(secret=True) if self._matches(key)]
        if not secret_keys:
            where = "the imported --gpg-private-key" if self._private_key is not None else "your GnuPG keyring"
            raise ConfigurationError(
                f"--signing-key {self.key_id}: no secret key with this id in {where}",
                hint="check the id with `gpg --list-secret-keys --keyid-format long`",
            )
        public = {key["fingerprint"]: key for key in self.gpg.list_keys(keys=[secret_keys[0]["fingerprint"]])}
        key = public.get(secret_keys[0]["fingerprint"], secret_keys[0])
        validity = str(key.get("trust", ""))
        expires = str(key.get("expires") or "")
        if validity == "r":
            raise ConfigurationError(f"--signing-key {self.key_id}: the key is revoked")
        if validity == "e" or (expires.isdigit() and int(expires) < time.time()):
            raise ConfigurationError(f"--signing-key {self.key_id}: the key has expired")
        if "S" not in str(key.get("cap", "")):
            raise ConfigurationError(
                f"--signing-key {self.key_id}: the key has no usable signing capability (capabilities "
                f"{key.get('cap', '?')!r})"
            )
        return str(key["fingerprint"])

    def _probe(self) -> None:
        """A test signature: proves the passphrase before hours of building depend on it."""
        with tempfile.TemporaryDirectory(prefix="slurm-factory-probe-") as scratch:
            probe = Path(scratch) / "probe"
            probe.write_bytes(_PROBE)
            result = self._sign(probe, Path(scratch) / "probe.asc")
            if not result:
                raise ConfigurationError(
                    f"--signing-key {self.key_id}: cannot sign: {self._failure_reason(result)}",
                    hint="check --gpg-passphrase / --gpg-passphrase-file / SLURM_FACTORY_GPG_PASSPHRASE",
                )

    def _failure_reason(self, result: Any) -> str:
        """gpg reports `[GNUPG:] FAILURE sign <code>`; the low 16 bits are the gpg-error code."""
        codes = [
            int(line.split()[-1]) & 0xFFFF
            for line in str(getattr(result, "stderr", "")).splitlines()
            if line.startswith("[GNUPG:] FAILURE") and line.split()[-1].isdigit()
        ]
        if _GPG_ERR_BAD_PASSPHRASE in codes:
            return "wrong passphrase"
        if self._passphrase is None:
            return "the key is protected by a passphrase and none was given"
        return str(getattr(result, "status", None) or "gpg refused to sign")

    def _sign(self, path: Path, output: Path, *, inline: bool = False) -> Any:
        with path.open("rb") as stream:
            return self.gpg.sign_file(
                stream,
                keyid=self.fingerprint,
                passphrase=self._passphrase_text(),
                detach=not inline,
                clearsign=inline,
                binary=False,
                output=str(output),
            )

    def sign_detached(self, path: Path, signature: Path | None = None) -> Path:
        """Write an ASCII-armored detached signature (default `<path>.asc`), atomically."""
        return self._signed(path, signature or path.with_name(path.name + ".asc"), inline=False)

    def sign_inline(self, path: Path, signed: Path) -> Path:
        """Write `signed`, `path`'s text with a clear-text signature around it (an apt repository's InRelease)."""
        return self._signed(path, signed, inline=True)

    def _signed(self, path: Path, output: Path, *, inline: bool) -> Path:
        partial = output.with_name(f".{output.name}.partial")
        result = self._sign(path, partial, inline=inline)
        if not result or not partial.is_file():
            partial.unlink(missing_ok=True)
            raise SigningError(f"signing {path.name} failed: {getattr(result, 'status', 'gpg error')}")
        os.replace(partial, output)
        return output

    def export_secret_key(self) -> bytes:
        """The armored secret key, for a Spack buildcache push inside a build container (delivered there only
        through a tmpfs file written via standard input). gpg keeps it protected by the same passphrase."""
        armored = self.gpg.export_keys(
            self.fingerprint, secret=True, armor=True, passphrase=self._passphrase_text(), expect_passphrase=False
        )
        if not armored or "PRIVATE KEY" not in armored:
            raise SigningError(f"exporting the secret key {self.key_id} for the buildcache push failed")
        return str(armored).encode()

    def secret_files(self) -> dict[str, bytes]:
        """What a build container needs to sign a buildcache push: the key and, if any, its passphrase."""
        files = {SECRET_KEY_FILE: self.export_secret_key()}
        passphrase = self._passphrase_text()
        if passphrase:
            files[SECRET_PASSPHRASE_FILE] = passphrase.encode()
        return files

    def export_public_key(self, directory: Path) -> Path:
        """`<directory>/<KEYID>.pub.asc`: the public key consumers pin (`gpg --import`, Spack `keys --install`)."""
        armored = self.gpg.export_keys(self.fingerprint, secret=False, armor=True)
        if not armored:
            raise SigningError(f"exporting the public key {self.key_id} failed")
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"{self.fingerprint[-16:]}.pub.asc"
        partial = target.with_name(f".{target.name}.partial")
        partial.write_text(armored, encoding="utf-8")
        os.replace(partial, target)
        return target

    def close(self) -> None:
        """Stop the temporary keyring's agent and delete the keyring. Safe to call twice."""
        home, self._home = self._home, None
        self._gpg = None
        if home is not None:
            remove_keyring(home)


def public_key_fingerprints(public_key: Path) -> set[str]:
    """The fingerprints of the keys in an exported public key file (read in a throwaway keyring)."""
    home = Path(tempfile.mkdtemp(prefix="slurm-factory-gnupg-scan-"))
    try:
        home.chmod(0o700)
        gpg = gnupg.GPG(gnupghome=str(home), env=child_environment())
        return {str(key["fingerprint"]).upper() for key in gpg.scan_keys(str(public_key))}
    finally:
        remove_keyring(home)


def verify_signature(path: Path, signature: Path, public_key: Path) -> tuple[bool, str]:
    """Check a detached signature against one public key in a throwaway keyring; (valid, who or why)."""
    home = Path(tempfile.mkdtemp(prefix="slurm-factory-gnupg-verify-"))
    try:
        home.chmod(0o700)
        gpg = gnupg.GPG(gnupghome=str(home), env=child_environment())
        imported = gpg.import_keys(public_key.read_text(encoding="utf-8"))
        if not imported.fingerprints:
            return False, f"{public_key.name} holds no public key"
        with signature.open("rb") as stream:
            verified = gpg.verify_file(stream, str(path))
        if verified.valid:
            return True, f"good signature by {verified.username} ({verified.fingerprint})"
        return False, f"bad signature: {verified.status or 'gpg could not verify it'}"
    finally:
        remove_keyring(home)
