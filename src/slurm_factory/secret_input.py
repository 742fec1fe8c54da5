"""Secret intake: the GPG private key and its passphrase, held only as secret types.

Secrets come from an option value, `@path`, a file option or the environment. They are decoded and checked here,
kept in `pydantic.SecretBytes`/`SecretStr` (repr shows `***`), and never formatted into messages; child processes
get `child_environment()`, which holds none of them.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from pydantic import SecretBytes, SecretStr

from slurm_factory.exceptions import ConfigurationError

PRIVATE_KEY_ENV = "SLURM_FACTORY_GPG_PRIVATE_KEY"
PASSPHRASE_ENV = "SLURM_FACTORY_GPG_PASSPHRASE"
_ARMOR_HEADER = b"-----BEGIN PGP PRIVATE KEY BLOCK-----"


_SECRET_FILE_CAP = 1 << 20


def _read_secret_file(path_text: str, option: str) -> bytes:
    path = Path(path_text).expanduser()
    try:
        if not path.is_file():  # a FIFO with no writer would block forever; a directory is no key either
            reason = "no such file" if not path.exists() else "not a regular file"
            raise ConfigurationError(f"{option}: cannot read {path}: {reason}")
        if path.stat().st_size > _SECRET_FILE_CAP:
            raise ConfigurationError(f"{option}: {path} is over {_SECRET_FILE_CAP} bytes: not a key or passphrase")
        return path.read_bytes()
    except OSError as error:
        raise ConfigurationError(f"{option}: cannot read {path}: {error.strerror}") from None


def _is_armored(material: bytes) -> bool:
    return material.lstrip().startswith(_ARMOR_HEADER)


def _is_binary_openpgp(material: bytes) -> bool:
    # A binary OpenPGP packet starts with a tag byte whose high bit is set.
    return bool(material) and material[0] & 0x80 == 0x80


def decode_private_key(text: str, option: str = "--gpg-private-key") -> SecretBytes:
    """Accept `@path` (armored, binary or base64 file), armored text, or base64 of an armored/binary key."""
    from_file = text.startswith("@")
    material = _read_secret_file(text[1:], option) if from_file else text.encode()
    if _is_armored(material):
        return SecretBytes(material.strip())
    if from_file and _is_binary_openpgp(material):
        return SecretBytes(material)
    try:
        decoded = base64.b64decode(b"".join(material.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(
            f"{option}: not base64 of an OpenPGP private key, nor an ASCII-armored key, nor @path to one"
        ) from None
    if _is_armored(decoded):
        return SecretBytes(decoded.strip())
    if _is_binary_openpgp(decoded):
        return SecretBytes(decoded)
    raise ConfigurationError(f"{option}: the base64 text does not decode to an OpenPGP private key")


def read_passphrase_file(path_text: str, option: str = "--gpg-passphrase-file") -> str:
    raw = _read_secret_file(path_text, option)
    try:
        passphrase = raw.decode().rstrip("\r\n")
    except UnicodeDecodeError:
        raise ConfigurationError(f"{option}: the passphrase is not UTF-8 text") from None
    if not passphrase:
        raise _empty_passphrase(f"{option}: {Path(path_text).expanduser()} is empty")
    return passphrase


def _empty_passphrase(what: str) -> ConfigurationError:
    """An empty passphrase is a secret that did not arrive (an unmounted file, an unset variable), not a choice."""
    return ConfigurationError(
        f"{what}; the signing key's passphrase was expected there",
        hint="a key without a passphrase needs no passphrase option",
    )


def private_key_from(value: str | None, *, use_environment: bool = True) -> SecretBytes | None:
    """The private key from the option value, else (if allowed) from `SLURM_FACTORY_GPG_PRIVATE_KEY`."""
    if value is not None:
        return decode_private_key(value)
    env_value = _take_from_environment(PRIVATE_KEY_ENV) if use_environment else None
    return decode_private_key(env_value, PRIVATE_KEY_ENV) if env_value else None


def passphrase_from(value: str | None, *, use_environment: bool = True) -> SecretStr | None:
    """The passphrase from the option value (`@path`: read from that file, which is how `--gpg-passphrase-file`
    travels to a matrix cell's worker), else (if allowed) from `SLURM_FACTORY_GPG_PASSPHRASE`."""
    if value is not None and value.startswith("@"):
        return SecretStr(read_passphrase_file(value[1:], "--gpg-passphrase"))
    if value == "":
        raise _empty_passphrase("--gpg-passphrase is empty")
    if value is not None:
        return SecretStr(value)
    env_value = _take_from_environment(PASSPHRASE_ENV) if use_environment else None
    if env_value == "":
        raise _empty_passphrase(f"{PASSPHRASE_ENV} is set but empty")
    return SecretStr(env_value) if env_value is not None else None


def _take_from_environment(name: str) -> str | None:
    """Read a secret from the environment; child processes never inherit it (see `child_environment`)."""
    return os.environ.get(name)


# Variables that hold secrets slurm-factory reads (its own, and the AWS SDK's).
SECRET_VARIABLES = (
    PRIVATE_KEY_ENV,
    PASSPHRASE_ENV,
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
)


def child_environment() -> dict[str, str]:
    """The environment for every child process slurm-factory starts (gpg, its agent, gpgconf): the caller's,
    without any secret variable. The caller's own environment is left as it is, so a second build in the same
    process finds the same secrets."""
    return {name: value for name, value in os.environ.items() if name not in SECRET_VARIABLES}
