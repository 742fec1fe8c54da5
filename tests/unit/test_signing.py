"""Signing with the real `gpg`: throwaway keys, detached signatures that plain `gpg --verify` accepts, an ephemeral
keyring that is gone (agent included) after use, and every unusable key refused with exit 2 before Docker is
contacted."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretBytes, SecretStr
from typer.testing import CliRunner, Result

from slurm_factory import cli
from slurm_factory.exceptions import EXIT_USAGE, ConfigurationError
from slurm_factory.secret_input import decode_private_key
from slurm_factory.signing import SigningKey, verify_signature
from tests.conftest import slurm_source_tarball
from tests.gpg_keys import Key, Keys, kill_agent, run_gpg
from tests.gpg_keys import keys as keys  # the session fixture

pytestmark = pytest.mark.skipif(shutil.which("gpg") is None, reason="needs the gpg binary (GnuPG 2.2)")

KEYRING_PREFIX = "slurm-factory-gnupg-"
NATIVE_TRIXIE = ["build-slurm", "--engine", "native", "--toolchain", "trixie", "--slurm-version", "24.11.5"]
NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent.sock"}


@pytest.fixture(autouse=True)
def private_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The temporary directory `tempfile` hands out, private to one test (and short, for gpg-agent's socket)."""
    directory = Path(tempfile.mkdtemp(prefix="sf-sig-", dir="/tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    try:
        yield directory
    finally:
        monkeypatch.undo()
        for keyring in directory.glob(f"{KEYRING_PREFIX}*"):
            kill_agent(keyring)
        shutil.rmtree(directory, ignore_errors=True)


def _processes_referring_to(path: Path) -> list[str]:
    """Command lines of running processes (gpg-agent, …) that name `path`."""
    needle = str(path).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace").strip())
    return found


def _wait_until_no_process_refers_to(path: Path, seconds: float = 5.0) -> list[str]:
    deadline = time.monotonic() + seconds
    while (left := _processes_referring_to(path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _gpg_verify(public_key: Path, signature: Path, data: Path) -> subprocess.CompletedProcess[str]:
    """Plain `gpg --verify` in a fresh GNUPGHOME holding only `public_key`."""
    home = Path(tempfile.mkdtemp(prefix="sf-verify-", dir="/tmp"))
    try:
        home.chmod(0o700)
        run_gpg(["gpg", "--homedir", str(home), "--batch", "--import", str(public_key)])
        return subprocess.run(
            ["gpg", "--homedir", str(home), "--batch", "--status-fd", "1", "--verify", str(signature), str(data)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    finally:
        kill_agent(home)
        shutil.rmtree(home, ignore_errors=True)


def _flip_one_byte(path: Path) -> None:
    with path.open("r+b") as stream:
        stream.seek(path.stat().st_size // 2)
        byte = stream.read(1)
        stream.seek(-1, os.SEEK_CUR)
        stream.write(bytes([byte[0] ^ 0x01]))


def _payload(directory: Path) -> Path:
    data = directory / "slurm-24.11-trixie-software.tar.gz"
    data.write_bytes(os.urandom(64 * 1024))
    return data


def _key_text(key: Key, form: str) -> str:
    """The --gpg-private-key value in one of its accepted forms."""
    if form == "armored":
        return key.armored_secret
    if form == "base64-armored":
        return base64.b64encode(key.armored_secret.encode()).decode()
    if form == "base64-binary":
        return base64.b64encode(key.binary_secret).decode()
    if form == "@path-armored":
        return f"@{key.secret_file}"
    if form == "@path-binary":
        return f"@{key.binary_secret_file}"
    raise AssertionError(form)


# --- signing and verifying ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["armored", "base64-armored", "base64-binary", "@path-armored", "@path-binary"])
def test_signature_made_with_imported_key_verifies_with_plain_gpg_and_a_flipped_byte_fails(
    keys: Keys, tmp_path: Path, form: str
) -> None:
    key = keys.protected
    data = _payload(tmp_path)
    with SigningKey(key.long_id, decode_private_key(_key_text(key, form)), key.secret_passphrase()) as signer:
        assert signer.fingerprint == key.fingerprint
        signature = signer.sign_detached(data)
    assert signature == data.with_name(data.name + ".asc")
    assert signature.read_text().startswith("-----BEGIN PGP SIGNATURE-----")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "partial signature left behind"

    good = _gpg_verify(key.public_file, signature, data)
    assert good.returncode == 0, good.stderr
    assert f"[GNUPG:] VALIDSIG {key.fingerprint}" in good.stdout
    valid, who = verify_signature(data, signature, key.public_file)
    assert valid, who
    assert key.fingerprint in who

    _flip_one_byte(data)
    bad = _gpg_verify(key.public_file, signature, data)
    assert bad.returncode != 0
    assert "[GNUPG:] BADSIG" in bad.stdout
    valid, why = verify_signature(data, signature, key.public_file)
    assert not valid
    assert "bad signature" in why


def test_unprotected_key_signs_without_a_passphrase(keys: Keys, tmp_path: Path) -> None:
    key = keys.unprotected
    data = _payload(tmp_path)
    with SigningKey(key.long_id, decode_private_key(f"@{key.secret_file}"), None) as signer:
        signature = signer.sign_detached(data)
    result = _gpg_verify(key.public_file, signature, data)
    assert result.returncode == 0, result.stderr
    assert f"[GNUPG:] VALIDSIG {key.fingerprint}" in result.stdout


@pytest.mark.parametrize("id_form", ["fingerprint", "lowercase-fingerprint", "long-id", "short-id"])
def test_signing_key_is_found_by_fingerprint_long_or_short_id_in_any_case(
    keys: Keys, tmp_path: Path, id_form: str
) -> None:
    key = keys.unprotected
    key_id = {
        "fingerprint": key.fingerprint,
        "lowercase-fingerprint": key.fingerprint.lower(),
        "long-id": key.long_id,
        "short-id": key.fingerprint[-8:],
    }[id_form]
    with SigningKey(key_id, decode_private_key(key.armored_secret), None) as signer:
        assert signer.fingerprint == key.fingerprint


def test_signature_does_not_verify_against_an_unrelated_public_key(keys: Keys, tmp_path: Path) -> None:
    data = _payload(tmp_path)
    with SigningKey(keys.unprotected.long_id, decode_private_key(keys.unprotected.armored_secret), None) as signer:
        signature = signer.sign_detached(data)
    other = _gpg_verify(keys.unrelated.public_file, signature, data)
    assert other.returncode != 0
    assert "VALIDSIG" not in other.stdout
    valid, _ = verify_signature(data, signature, keys.unrelated.public_file)
    assert not valid


def test_verify_signature_refuses_a_public_key_file_without_a_key(keys: Keys, tmp_path: Path) -> None:
    data = _payload(tmp_path)
    with SigningKey(keys.unprotected.long_id, decode_private_key(keys.unprotected.armored_secret), None) as signer:
        signature = signer.sign_detached(data)
    empty = tmp_path / "nothing.pub.asc"
    empty.write_text("not a key\n")
    valid, why = verify_signature(data, signature, empty)
    assert not valid
    assert "no public key" in why


def test_export_public_key_writes_long_id_file_that_imports_as_public_only(keys: Keys, tmp_path: Path) -> None:
    key = keys.protected
    with SigningKey(key.long_id, decode_private_key(key.armored_secret), key.secret_passphrase()) as signer:
        exported = signer.export_public_key(tmp_path / "keys")
    assert exported == tmp_path / "keys" / f"{key.fingerprint[-16:]}.pub.asc"
    text = exported.read_text()
    assert text.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert "PRIVATE KEY" not in text
    home = Path(tempfile.mkdtemp(prefix="sf-import-", dir="/tmp"))
    try:
        imported = run_gpg(["gpg", "--homedir", str(home), "--batch", "--status-fd", "1", "--import", str(exported)])
        assert f"[GNUPG:] IMPORT_OK 1 {key.fingerprint}" in imported.stdout.decode()
        secret = run_gpg(["gpg", "--homedir", str(home), "--batch", "--with-colons", "--list-secret-keys"])
        assert secret.stdout.decode().strip() == ""
    finally:
        kill_agent(home)
        shutil.rmtree(home, ignore_errors=True)


# --- the ephemeral keyring --------------------------------------------------------------------------------------------


def test_keyring_and_its_agent_are_gone_after_the_with_block(keys: Keys, private_tmp: Path) -> None:
    key = keys.protected
    with SigningKey(key.long_id, decode_private_key(key.armored_secret), key.secret_passphrase()) as signer:
        home = Path(signer.gpg.gnupghome)
        assert home.parent == private_tmp and home.name.startswith(KEYRING_PREFIX)
        assert home.stat().st_mode & 0o777 == 0o700
        assert _processes_referring_to(home), "the probe signature should have started an agent for the keyring"
    assert not home.exists()
    assert _wait_until_no_process_refers_to(home) == []


def test_keyring_and_its_agent_are_gone_when_the_block_raises(keys: Keys, private_tmp: Path) -> None:
    key = keys.protected
    with (
        pytest.raises(RuntimeError, match="boom"),
        SigningKey(key.long_id, decode_private_key(key.armored_secret), key.secret_passphrase()) as signer,
    ):
        home = Path(signer.gpg.gnupghome)
        assert home.is_dir()
        assert _processes_referring_to(home)
        raise RuntimeError("boom")
    assert not home.exists()
    assert _wait_until_no_process_refers_to(home) == []
    assert list(private_tmp.iterdir()) == []


def test_signing_key_used_after_its_block_raises_instead_of_signing(keys: Keys, tmp_path: Path) -> None:
    key = keys.unprotected
    data = _payload(tmp_path)
    with SigningKey(key.long_id, decode_private_key(key.armored_secret), None) as signer:
        pass
    with pytest.raises(RuntimeError, match="outside its `with` block"):
        signer.sign_detached(data)
    signer.close()  # a second close is harmless
    assert not data.with_name(data.name + ".asc").exists()


# --- every unusable key is refused with exit 2 ------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    key: str  # attribute of Keys whose secret material is given
    key_id: str | None  # None: the key's own long id; "unrelated": the unrelated key's id
    material: str  # "secret" or "binary-public"
    passphrase: str | None  # "right", "wrong" or None
    option: str
    expected: str


REFUSALS = {
    "wrong-passphrase": Refusal("protected", None, "secret", "wrong", "--signing-key", "wrong passphrase"),
    "protected-key-without-passphrase": Refusal(
        "protected", None, "secret", None, "--signing-key", "protected by a passphrase and none was given"
    ),
    "key-id-not-in-the-key": Refusal(
        "protected", "0123456789ABCDEF", "secret", "right", "--signing-key", "no secret key with this id"
    ),
    "id-of-another-key": Refusal(
        "protected", "unrelated", "secret", "right", "--signing-key", "no secret key with this id"
    ),
    "expired-key": Refusal("expired", None, "secret", None, "--signing-key", "expired"),
    "certify-only-key": Refusal("certify_only", None, "secret", None, "--signing-key", "signing capability"),
    "public-key-as-private-key": Refusal(
        "unprotected", None, "binary-public", None, "--gpg-private-key", "no secret key could be imported"
    ),
}


def _refusal_inputs(keys: Keys, refusal: Refusal) -> tuple[Key, str, Path, str | None]:
    """(key, key id, key file, passphrase) of one refusal case."""
    key: Key = getattr(keys, refusal.key)
    if refusal.key_id is None:
        key_id = key.long_id
    elif refusal.key_id == "unrelated":
        key_id = keys.unrelated.long_id
    else:
        key_id = refusal.key_id
    key_file = key.secret_file if refusal.material == "secret" else key.binary_public_file
    passphrase = {"right": key.passphrase, "wrong": "not-the-passphrase", None: None}[refusal.passphrase]
    return key, key_id, key_file, passphrase


def _assert_one_line_naming(message: str, refusal: Refusal) -> None:
    assert "\n" not in message
    assert message.startswith(refusal.option), message
    assert refusal.expected in message, message


@pytest.mark.parametrize("case", list(REFUSALS))
def test_unusable_key_is_a_configuration_error_and_leaves_no_keyring(keys: Keys, private_tmp: Path, case: str) -> None:
    refusal = REFUSALS[case]
    key, key_id, key_file, passphrase = _refusal_inputs(keys, refusal)
    signer = SigningKey(
        key_id, decode_private_key(f"@{key_file}"), SecretStr(passphrase) if passphrase is not None else None
    )
    with pytest.raises(ConfigurationError) as raised, signer:
        pytest.fail("an unusable key must be refused on entry")
    error = raised.value
    assert error.exit_code == EXIT_USAGE == 2
    _assert_one_line_naming(error.message, refusal)
    if key.passphrase:
        assert key.passphrase not in error.message and key.passphrase not in (error.hint or "")
    assert list(private_tmp.glob(f"{KEYRING_PREFIX}*")) == [], "a refused key left its keyring behind"
    assert _wait_until_no_process_refers_to(private_tmp) == []


@pytest.mark.parametrize("form", ["armored", "base64"])
def test_armored_public_key_given_as_private_key_is_refused(keys: Keys, form: str) -> None:
    text = keys.unprotected.armored_public
    if form == "base64":
        text = base64.b64encode(text.encode()).decode()
    with pytest.raises(ConfigurationError) as raised:
        decode_private_key(text)
    assert raised.value.exit_code == 2
    assert "\n" not in raised.value.message
    assert raised.value.message.startswith("--gpg-private-key")


def test_public_key_material_passed_directly_is_refused_on_import(keys: Keys, private_tmp: Path) -> None:
    key = keys.unprotected
    with (
        pytest.raises(ConfigurationError, match=r"^--gpg-private-key: no secret key could be imported"),
        SigningKey(key.long_id, SecretBytes(key.armored_public.encode()), None),
    ):
        pytest.fail("a public key must not be accepted as a signing key")
    assert list(private_tmp.iterdir()) == []


def test_passphrase_with_a_newline_is_a_configuration_error(keys: Keys, private_tmp: Path) -> None:
    key = keys.protected
    signer = SigningKey(key.long_id, decode_private_key(key.armored_secret), SecretStr(f"{key.passphrase}\nextra"))
    with pytest.raises(ConfigurationError) as raised, signer:
        pytest.fail("a passphrase gpg cannot receive must be refused on entry")
    assert raised.value.exit_code == 2
    assert "\n" not in raised.value.message
    assert raised.value.message.startswith("--gpg-passphrase")
    assert str(key.passphrase) not in raised.value.message
    assert list(private_tmp.iterdir()) == []


# --- the same refusals through the CLI, before Docker is contacted ------------------------------------------------


def _build(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli.app, [*NATIVE_TRIXIE, *args], env={**NO_DOCKER, **(env or {})})


def _error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("case", list(REFUSALS))
def test_cli_refuses_an_unusable_key_with_exit_2_before_contacting_docker(
    keys: Keys, tmp_path: Path, private_tmp: Path, case: str
) -> None:
    source = slurm_source_tarball()
    refusal = REFUSALS[case]
    _, key_id, key_file, passphrase = _refusal_inputs(keys, refusal)
    args = ["--slurm-source", str(source), "--signing-key", f"0x{key_id}", "--gpg-private-key", f"@{key_file}"]
    if passphrase is not None:
        passphrase_file = tmp_path / "passphrase"
        passphrase_file.write_text(passphrase + "\n")
        args += ["--gpg-passphrase-file", str(passphrase_file)]
    result = _build(*args)
    assert result.exit_code == 2, result.output
    assert "cannot reach the Docker engine" not in result.output
    [error] = _error_lines(result)
    _assert_one_line_naming(error.removeprefix("error: "), refusal)
    assert list(private_tmp.glob(f"{KEYRING_PREFIX}*")) == []


def test_cli_with_a_usable_key_gets_past_signing_to_the_docker_engine(
    keys: Keys, tmp_path: Path, private_tmp: Path
) -> None:
    """The control for the refusals above: the same command with the right passphrase fails only at Docker."""
    source = slurm_source_tarball()
    key = keys.protected
    result = _build(
        "--slurm-source",
        str(source),
        "--signing-key",
        f"0x{key.long_id}",
        "--gpg-private-key",
        f"@{key.secret_file}",
        "--gpg-passphrase-file",
        str(key.passphrase_file),
    )
    assert result.exit_code == 1, result.output
    [error] = _error_lines(result)
    assert error.startswith("error: cannot reach the Docker engine"), error
    assert list(private_tmp.glob(f"{KEYRING_PREFIX}*")) == [], "the keyring outlived the failed build"


def test_cli_refuses_a_passphrase_file_with_a_line_break_inside_with_exit_2(keys: Keys, tmp_path: Path) -> None:
    source = slurm_source_tarball()
    key = keys.protected
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text(f"{key.passphrase}\nsecond line\n")
    result = _build(
        "--slurm-source",
        str(source),
        "--signing-key",
        f"0x{key.long_id}",
        "--gpg-private-key",
        f"@{key.secret_file}",
        "--gpg-passphrase-file",
        str(passphrase_file),
    )
    assert result.exit_code == 2, result.output
    [error] = _error_lines(result)
    assert error.startswith("error: --gpg-passphrase"), error
    assert "unexpected" not in result.output and "cannot reach the Docker engine" not in result.output
    assert str(key.passphrase) not in result.output


def test_cli_reports_the_armored_public_key_as_private_key_with_exit_2(keys: Keys) -> None:
    result = _build(
        "--signing-key",
        f"0x{keys.unprotected.long_id}",
        "--gpg-private-key",
        f"@{keys.unprotected.public_file}",
    )
    assert result.exit_code == 2, result.output
    [error] = _error_lines(result)
    assert error.startswith("error: --gpg-private-key"), error
    assert "cannot reach the Docker engine" not in result.output


# --- secrets on the command line warn -------------------------------------------------------------------------------


def _warnings(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if "warning" in line.lower()]


def test_passphrase_on_the_command_line_prints_exactly_one_warning(keys: Keys) -> None:
    key = keys.protected
    assert key.passphrase is not None
    result = _build(
        "--dry-run",
        "--signing-key",
        f"0x{key.long_id}",
        "--gpg-private-key",
        f"@{key.secret_file}",
        "--gpg-passphrase",
        key.passphrase,
    )
    assert result.exit_code == 0, result.output
    [warning] = _warnings(result)
    assert "--gpg-passphrase" in warning
    assert "--gpg-private-key" not in warning
    assert warning in result.stderr.splitlines()
    assert key.passphrase not in result.output


def test_private_key_and_passphrase_on_the_command_line_share_one_warning_line(keys: Keys) -> None:
    key = keys.protected
    assert key.passphrase is not None
    result = _build(
        "--dry-run",
        "--signing-key",
        f"0x{key.long_id}",
        "--gpg-private-key",
        base64.b64encode(key.armored_secret.encode()).decode(),
        "--gpg-passphrase",
        key.passphrase,
    )
    assert result.exit_code == 0, result.output
    [warning] = _warnings(result)
    assert "--gpg-private-key" in warning and "--gpg-passphrase" in warning


@pytest.mark.parametrize("passphrase_from", ["file", "environment"])
def test_secrets_from_path_file_or_environment_print_no_warning(keys: Keys, passphrase_from: str) -> None:
    key = keys.protected
    assert key.passphrase is not None
    args = ["--dry-run", "--signing-key", f"0x{key.long_id}", "--gpg-private-key", f"@{key.secret_file}"]
    env = {}
    if passphrase_from == "file":
        args += ["--gpg-passphrase-file", str(key.passphrase_file)]
    else:
        env["SLURM_FACTORY_GPG_PASSPHRASE"] = key.passphrase
    result = _build(*args, env=env)
    assert result.exit_code == 0, result.output
    assert _warnings(result) == []


def test_secret_files_for_a_build_container_carry_a_key_that_signs_with_the_passphrase_file(
    keys: Keys, private_tmp: Path
) -> None:
    """What a Spack container gets: the armored secret key and the passphrase file; gpg signs with exactly that,
    configured as the container's templates/spack/_signing.sh.j2 configures it."""
    key = keys.protected
    with SigningKey(key.long_id, decode_private_key(key.armored_secret), key.secret_passphrase()) as signer:
        files = signer.secret_files()
    assert set(files) == {"signing-key.asc", "passphrase"}
    assert files["passphrase"] == str(key.passphrase).encode()
    assert b"BEGIN PGP PRIVATE KEY BLOCK" in files["signing-key.asc"]
    home = private_tmp / "container-gnupg"
    home.mkdir(mode=0o700)
    for name, data in files.items():
        (private_tmp / name).write_bytes(data)
    (home / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")
    (home / "gpg.conf").write_text(f"pinentry-mode loopback\npassphrase-file {private_tmp / 'passphrase'}\n")
    data = private_tmp / "data"
    data.write_bytes(b"buildcache blob\n")
    try:
        run_gpg(["gpg", "--homedir", str(home), "--batch", "--import", str(private_tmp / "signing-key.asc")])
        run_gpg(["gpg", "--homedir", str(home), "--batch", "--local-user", key.fingerprint, "--armor",
              "--detach-sign", str(data)])  # fmt: skip
        assert _gpg_verify(key.public_file, data.with_name("data.asc"), data).returncode == 0
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)


def test_gpg_and_its_agent_never_inherit_a_secret_variable(keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's environment keeps its secrets (a second build finds them); gpg's processes get none of them."""
    secrets = {
        "AWS_SECRET_ACCESS_KEY": "aws-secret-for-the-agent-test-0123",
        "AWS_SESSION_TOKEN": "aws-token-for-the-agent-test-4567",
        "SLURM_FACTORY_GPG_PASSPHRASE": "gpg-passphrase-for-the-agent-test",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    key = keys.protected
    with SigningKey(key.long_id, decode_private_key(key.armored_secret), key.secret_passphrase()) as signer:
        home = signer.gpg.gnupghome
        children = [entry for entry in Path("/proc").iterdir() if entry.name.isdigit() and _names(entry, home)]
        assert children, "the probe signature should have started gpg-agent for the temporary keyring"
        environments = b"".join(_read(entry / "environ") for entry in children)
    assert b"GNUPGHOME" in environments or b"PATH=" in environments  # the environments were readable
    for value in secrets.values():
        assert value.encode() not in environments
    assert {name: os.environ[name] for name in secrets} == secrets


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _names(process: Path, home: str) -> bool:
    return int(process.name) != os.getpid() and home.encode() in _read(process / "cmdline")
