"""make_request(): every bad option value is refused up front, naming the option; good values become a BuildRequest."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretBytes, SecretStr

from slurm_factory.catalog import resolve_release
from slurm_factory.catalog.compilers import load_gcc_catalog
from slurm_factory.exceptions import EXIT_USAGE, ConfigurationError
from slurm_factory.request import (
    Arch,
    BuildcacheMode,
    BuildRequest,
    Engine,
    PublishMode,
    make_compiler_request,
    make_request,
    without_credentials,
)

ARMORED_KEY = (
    "-----BEGIN PGP PRIVATE KEY BLOCK-----\n"
    "\n"
    "lQdGBGXfakeTOPSECRETkeymaterialAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
    "=abcd\n"
    "-----END PGP PRIVATE KEY BLOCK-----\n"
)
ARMORED_KEY_B64 = base64.b64encode(ARMORED_KEY.encode()).decode()
# A binary OpenPGP packet starts with a tag byte whose high bit is set (0x95: old-format secret-key packet).
BINARY_KEY = bytes([0x95, 0x01, 0xD8]) + b"TOPSECRETbinarykeymaterial" + bytes(range(32))
KEY_ID = "0xABCD12345EED0000"
FINGERPRINT = "0123456789ABCDEF0123456789ABCDEF01234567"
PASSPHRASE = "correct-horse-battery-staple-TOPSECRET"

ALL_TOOLCHAINS = ("resolute", "noble", "jammy", "rockylinux10", "rockylinux9", "rockylinux8", "trixie", "bookworm")
SERIES = ("23.11", "24.11", "25.11", "26.05")
GCC_VERSIONS = tuple(load_gcc_catalog().versions)
SIGNED = {"signing_key": KEY_ID}


@pytest.fixture(autouse=True)
def _no_secret_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The secret environment variables of the developer or CI must not leak into these tests."""
    monkeypatch.delenv("SLURM_FACTORY_GPG_PRIVATE_KEY", raising=False)
    monkeypatch.delenv("SLURM_FACTORY_GPG_PASSPHRASE", raising=False)


def _with_tmp(kwargs: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    return {key: value.format(tmp=tmp_path) if isinstance(value, str) else value for key, value in kwargs.items()}


# Each case: the raw options, the option the message must name, and the valid values it must list (if a fixed set).
BAD_INPUTS = [
    # --slurm-version
    pytest.param({"slurm_version": "24.11.x"}, "--slurm-version", SERIES, id="version-malformed"),
    pytest.param({"slurm_version": "latest"}, "--slurm-version", SERIES, id="version-word"),
    pytest.param({"slurm_version": "24.11.5.1"}, "--slurm-version", SERIES, id="version-four-parts"),
    pytest.param({"slurm_version": "22.05"}, "--slurm-version", SERIES, id="version-unknown-series"),
    pytest.param(
        {"slurm_version": "24.11.99"}, "--slurm-version", ("24.11.0", "24.11.5", "24.11.7"), id="version-unknown-patch"
    ),
    # --releases-file, --upgrade-from
    pytest.param({"releases_file": "{tmp}/none.tsv"}, "--releases-file", ("no such file",), id="releases-file-missing"),
    pytest.param({"releases_file": "{tmp}"}, "--releases-file", ("not a regular file",), id="releases-file-directory"),
    pytest.param({"releases_file": " "}, "--releases-file", ("is empty",), id="releases-file-empty"),
    pytest.param(
        {"releases_file": "~no-such-user-here/r.tsv"}, "--releases-file", ("no such user",), id="releases-file-user"
    ),
    pytest.param(
        {"verify": True, "upgrade_from": "{tmp}"}, "--upgrade-from", ("not a regular file",), id="upgrade-from-dir"
    ),
    pytest.param({"upgrade_from": "{tmp}/old.tar.gz"}, "--upgrade-from", ("--verify",), id="upgrade-without-verify"),
    # --toolchain
    pytest.param({"toolchain": "centos7"}, "--toolchain", ALL_TOOLCHAINS, id="toolchain-unknown"),
    pytest.param({"toolchain": "Noble"}, "--toolchain", ALL_TOOLCHAINS, id="toolchain-wrong-case"),
    pytest.param({"toolchain": ""}, "--toolchain", ALL_TOOLCHAINS, id="toolchain-empty"),
    # --engine / --buildcache / --publish
    pytest.param({"engine": "docker"}, "--engine", ("spack", "native"), id="engine-unknown"),
    pytest.param({"buildcache": "some"}, "--buildcache", ("none", "deps", "all"), id="buildcache-unknown"),
    pytest.param({"publish": "everything"}, "--publish", ("none", "slurm", "deps", "all"), id="publish-unknown"),
    # signing
    pytest.param({"publish": "slurm"}, "--publish", ("--signing-key",), id="publish-slurm-without-signing-key"),
    pytest.param({"publish": "all"}, "--publish", ("--signing-key",), id="publish-all-without-signing-key"),
    pytest.param({"publish": "deps"}, "--publish", ("--signing-key",), id="publish-deps-without-signing-key"),
    pytest.param({"gpg_passphrase": "pw"}, "--gpg-passphrase", (), id="passphrase-without-any-key"),
    pytest.param(
        {"gpg_private_key": ARMORED_KEY_B64},
        "--gpg-private-key",
        ("--signing-key",),
        id="private-key-without-signing-key",
    ),
    pytest.param(
        {"gpg_private_key": ARMORED_KEY_B64, "gpg_passphrase": "pw"},
        "--gpg-private-key",
        ("--signing-key",),
        id="private-key-and-passphrase-without-signing-key",
    ),
    pytest.param({"signing_key": "not-a-key"}, "--signing-key", (), id="key-id-word"),
    pytest.param({"signing_key": "0x1234567"}, "--signing-key", (), id="key-id-7-digits"),
    pytest.param({"signing_key": "0x123456789ABC"}, "--signing-key", (), id="key-id-12-digits"),
    pytest.param({"signing_key": FINGERPRINT[:-1]}, "--signing-key", (), id="fingerprint-39-digits"),
    pytest.param({"signing_key": "0xGHIJKLMN"}, "--signing-key", (), id="key-id-non-hex"),
    pytest.param({"signing_key": ""}, "--signing-key", (), id="key-id-empty"),
    pytest.param({"signing_key": "0x0xABCD12345EED0000"}, "--signing-key", (), id="key-id-double-prefix"),
    pytest.param({**SIGNED, "gpg_private_key": "not base64 !!!"}, "--gpg-private-key", (), id="private-key-not-base64"),
    pytest.param(
        {**SIGNED, "gpg_private_key": base64.b64encode(b"hello world, not a key").decode()},
        "--gpg-private-key",
        (),
        id="private-key-base64-of-non-key",
    ),
    pytest.param(
        {**SIGNED, "gpg_private_key": "@{tmp}/missing-key.asc"},
        "--gpg-private-key",
        (),
        id="private-key-at-path-missing",
    ),
    pytest.param(
        {**SIGNED, "gpg_private_key": "@{tmp}"},
        "--gpg-private-key",
        (),
        id="private-key-at-path-directory",
    ),
    # options only the Spack engine honours
    pytest.param({"engine": "native", "buildcache": "deps"}, "--buildcache", (), id="native-buildcache-deps"),
    pytest.param({"engine": "native", "buildcache": "all"}, "--buildcache", (), id="native-buildcache-all"),
    pytest.param(
        {"engine": "native", "use_local_buildcache": True},
        "--use-local-buildcache",
        (),
        id="native-use-local-buildcache",
    ),
    pytest.param(
        {"engine": "native", "compiler_version": "13.4.0"}, "--compiler-version", (), id="native-compiler-version"
    ),
    pytest.param({"engine": "native", "enable_hierarchy": True}, "--enable-hierarchy", (), id="native-hierarchy"),
    pytest.param({"engine": "native", "publish": "deps", **SIGNED}, "--publish deps", (), id="native-publish-deps"),
    pytest.param(
        {"engine": "native", "gpu": True, "toolchain": "rockylinux9"}, "--gpu", (), id="native-gpu-rockylinux9"
    ),
    pytest.param(
        {"engine": "native", "gpu": True, "toolchain": "rockylinux8"}, "--gpu", (), id="native-gpu-rockylinux8"
    ),
    pytest.param(
        {"engine": "native", "gpu": True, "toolchain": "rockylinux10"}, "--gpu", (), id="native-gpu-rockylinux10"
    ),
    pytest.param({"engine": "native", "gpu": True, "toolchain": "jammy"}, "--gpu", (), id="native-gpu-jammy"),
    # --compiler-version
    pytest.param({"compiler_version": "9.9.9"}, "--compiler-version", GCC_VERSIONS, id="compiler-unknown"),
    pytest.param({"compiler_version": "13"}, "--compiler-version", GCC_VERSIONS, id="compiler-major-only"),
    # --slurm-source
    pytest.param({"slurm_source": "{tmp}/missing.tar.gz"}, "--slurm-source", (), id="source-missing-file"),
    pytest.param({"slurm_source": "{tmp}"}, "--slurm-source", (), id="source-directory"),
    pytest.param({"slurm_source": "file://{tmp}/missing.tar.gz"}, "--slurm-source", (), id="source-file-url-missing"),
    pytest.param(
        {"slurm_source": "ftp://mirror.example.org/slurm-24-11-5-1.tar.gz"},
        "--slurm-source",
        ("http://", "https://", "file://"),
        id="source-ftp-scheme",
    ),
    # --publish-url
    pytest.param(
        {"publish": "slurm", **SIGNED, "publish_url": "ftp://mirror.example.org/cache"},
        "--publish-url",
        ("file://", "s3://"),
        id="publish-url-ftp-scheme",
    ),
    pytest.param(
        {"publish": "slurm", **SIGNED, "publish_url": "relative/mirror"},
        "--publish-url",
        ("file://", "s3://"),
        id="publish-url-relative-path",
    ),
    pytest.param(
        {"publish": "slurm", **SIGNED, "publish_url": "file:relative/mirror"},
        "--publish-url",
        (),
        id="publish-url-file-relative",
    ),
    pytest.param(
        {"publish": "slurm", **SIGNED, "publish_url": "file://"}, "--publish-url", (), id="publish-url-file-empty"
    ),
    pytest.param(
        {"publish": "slurm", **SIGNED, "publish_url": "s3://"}, "--publish-url", (), id="publish-url-no-bucket"
    ),
    pytest.param(
        {"publish_url": "s3://bucket/cache"}, "--publish-url", ("--publish",), id="publish-url-with-publish-none"
    ),
    # --buildcache-url
    pytest.param(
        {"buildcache": "deps", "buildcache_url": "ftp://mirror.example.org/cache"},
        "--buildcache-url",
        ("file://", "s3://", "http://", "https://"),
        id="buildcache-url-ftp-scheme",
    ),
    pytest.param(
        {"buildcache": "deps", "buildcache_url": "relative/mirror"},
        "--buildcache-url",
        ("file://", "s3://", "http://", "https://"),
        id="buildcache-url-relative-path",
    ),
    pytest.param(
        {"buildcache": "all", "buildcache_url": "file:relative/mirror"},
        "--buildcache-url",
        (),
        id="buildcache-url-file-relative",
    ),
    pytest.param(
        {"buildcache": "deps", "buildcache_url": "https://"}, "--buildcache-url", (), id="buildcache-url-no-host"
    ),
    pytest.param(
        {"buildcache_url": "https://cache.example.org/mirror"},
        "--buildcache-url",
        ("--buildcache",),
        id="buildcache-url-nothing-reads-it",
    ),
    # --base-image
    pytest.param({"base_image": "Ubuntu:Noble"}, "--base-image", (), id="base-image-uppercase-repository"),
    pytest.param({"base_image": "ubuntu noble"}, "--base-image", (), id="base-image-space"),
    pytest.param({"base_image": "ubuntu::noble"}, "--base-image", (), id="base-image-double-colon"),
    pytest.param({"base_image": ""}, "--base-image", (), id="base-image-empty"),
    pytest.param({"base_image": "ubuntu@sha256:abc"}, "--base-image", (), id="base-image-short-digest"),
    pytest.param({"base_image": "-ubuntu:noble"}, "--base-image", (), id="base-image-leading-dash"),
    pytest.param(
        {"base_image": "ubuntu:noble\n"},
        "--base-image",
        (),
        id="base-image-trailing-newline",
    ),
    pytest.param(
        {"signing_key": "ABCD12345EED0000\n"},
        "--signing-key",
        (),
        id="key-id-trailing-newline",
    ),
]


@pytest.mark.parametrize(("options", "option", "valid_values"), BAD_INPUTS)
def test_bad_input_is_a_usage_error_naming_the_option(
    options: dict[str, Any], option: str, valid_values: tuple[str, ...], tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        make_request(**_with_tmp(options, tmp_path))
    error = caught.value
    assert error.exit_code == EXIT_USAGE == 2
    message = str(error)
    assert option in message
    for value in valid_values:
        assert value in message, f"{value!r} missing from {message!r}"


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"buildcache": "deps", "buildcache_url": "file://relative/mirror"}, id="buildcache-url"),
        pytest.param({"publish": "slurm", **SIGNED, "publish_url": "file://relative/mirror"}, id="publish-url"),
    ],
)
def test_file_url_with_a_relative_path_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        make_request(**options)


def test_secret_is_never_formatted_into_an_error_message() -> None:
    secret_text = "TOPSECRET-not-a-key-!!"
    with pytest.raises(ConfigurationError) as caught:
        make_request(signing_key=KEY_ID, gpg_private_key=secret_text)
    assert "TOPSECRET" not in str(caught.value)


def test_invalid_private_key_from_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_FACTORY_GPG_PRIVATE_KEY", "not base64 !!!")
    with pytest.raises(ConfigurationError) as caught:
        make_request(signing_key=KEY_ID)
    assert caught.value.exit_code == EXIT_USAGE
    assert "SLURM_FACTORY_GPG_PRIVATE_KEY" in str(caught.value)


def test_native_engine_refusal_carries_a_hint_to_use_spack() -> None:
    with pytest.raises(ConfigurationError) as caught:
        make_request(engine="native", buildcache="deps")
    assert caught.value.hint is not None
    assert "--engine spack" in caught.value.hint


# --- good input ----------------------------------------------------------------------------------------------------


def test_defaults_are_newest_25_11_on_noble_with_spack() -> None:
    request = make_request()
    assert isinstance(request, BuildRequest)
    assert request.slurm == resolve_release("25.11")
    assert request.slurm.version == "25.11.7"
    assert request.slurm.series == "25.11"
    assert request.toolchain.name == "noble"
    assert request.engine is Engine.SPACK
    assert request.base_image == "ubuntu:noble"
    assert request.buildcache is BuildcacheMode.NONE
    assert request.publish is PublishMode.NONE
    assert request.gpu is False
    assert request.verify is False
    assert request.no_cache is False
    assert request.enable_hierarchy is False
    assert request.use_local_buildcache is False
    assert request.signing_key is None
    assert request.gpg_private_key is None
    assert request.gpg_passphrase is None
    assert request.signs is False
    assert request.compiler_version is None
    assert request.slurm_source is None
    assert request.buildcache_url is None
    assert request.publish_url is None
    assert request.artifact_filename == "slurm-25.11-noble-software.tar.gz"


def test_artifact_filename_names_series_and_toolchain() -> None:
    request = make_request(slurm_version="24.11", toolchain="trixie")
    assert request.artifact_filename == "slurm-24.11-trixie-software.tar.gz"


def test_artifact_filename_of_a_gpu_build_has_gpu_suffix() -> None:
    request = make_request(slurm_version="24.11", toolchain="trixie", gpu=True)
    assert request.artifact_filename == "slurm-24.11-trixie-gpu-software.tar.gz"
    assert request.flavor == "24.11-trixie-gpu"


def test_artifact_filename_of_an_exact_pin_uses_the_series() -> None:
    request = make_request(slurm_version="24.11.5", toolchain="rockylinux9")
    assert request.artifact_filename == "slurm-24.11-rockylinux9-software.tar.gz"


def test_artifact_root_names_the_exact_release() -> None:
    assert make_request(slurm_version="24.11", toolchain="trixie").artifact_root == "slurm-24.11.7-trixie"
    assert make_request(slurm_version="24.11.5", toolchain="noble", gpu=True).artifact_root == "slurm-24.11.5-noble-gpu"
    assert make_request(slurm_version="26.05").artifact_root == "slurm-26.05.3-noble"


@pytest.mark.parametrize("toolchain", ALL_TOOLCHAINS)
def test_base_image_defaults_to_the_toolchain_image(toolchain: str) -> None:
    request = make_request(toolchain=toolchain)
    assert request.toolchain.name == toolchain
    assert request.base_image == request.toolchain.base_image


@pytest.mark.parametrize(
    "image",
    [
        "registry.example.org:5000/library/ubuntu:noble",
        "localhost/debian:trixie",
        "mirror.example.org/rockylinux/rockylinux:9",
        "ubuntu@sha256:" + "0123456789abcdef" * 4,
        "debian:trixie-20250101",
        "ubuntu",
    ],
)
def test_base_image_override_is_kept_verbatim(image: str) -> None:
    assert make_request(base_image=image).base_image == image


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("0xabcd12345eed0000", "ABCD12345EED0000"),
        ("ABCD12345EED0000", "ABCD12345EED0000"),
        ("0x0123456789abcdef", "0123456789ABCDEF"),
        (FINGERPRINT.lower(), FINGERPRINT),
        ("0123 4567 89AB CDEF 0123  4567 89AB CDEF 0123 4567", FINGERPRINT),
        ("0x" + FINGERPRINT, FINGERPRINT),
    ],
)
def test_signing_key_id_is_normalised(given: str, normalised: str) -> None:
    request = make_request(signing_key=given)
    assert request.signing_key == normalised
    assert request.signs is True


@pytest.mark.parametrize("given", ["0xDEADBEEF", "deadbeef", "0X1234abcd"])
def test_a_32_bit_short_key_id_is_refused_for_being_easy_to_collide(given: str) -> None:
    with pytest.raises(ConfigurationError, match="32-bit short key id") as raised:
        make_request(signing_key=given)
    assert raised.value.hint is not None and "--keyid-format long" in raised.value.hint


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"slurm_version": 24.11}, r"^slurm_version=24\.11: expected a string, not float$"),
        ({"toolchain": 7}, r"^toolchain=7: expected a string, not int$"),
        ({"gpu": "yes"}, r"^gpu='yes': expected True or False, not str$"),
        ({"slurm_source": "http://[::1"}, r"^--slurm-source 'http://\[::1' is not a valid URL"),
        ({"slurm_source": "http:///nohost.tar.gz"}, r"^--slurm-source 'http:///nohost.tar.gz': the URL names no host$"),
        ({"slurm_source": "/" + "a" * 5000}, r"^--slurm-source '/a+…a+' \(5001 characters\): File name too long$"),
        ({"buildcache": "deps", "buildcache_url": "s3://b:x/"}, r"^--buildcache-url 's3://b:x/' is not a valid URL"),
    ],
)
def test_python_api_and_url_mistakes_are_configuration_errors(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make_request(**arguments)


def test_a_path_object_is_accepted_where_a_path_is_expected(tmp_path: Path) -> None:
    tarball = tmp_path / "slurm-24.11.5.tar.gz"
    tarball.write_bytes(b"checked against the sha256 later, when it is read")
    request = make_request(slurm_version="24.11.5", toolchain="trixie", engine="native", slurm_source=tarball)
    assert request.slurm_source == str(tarball)


def test_signing_key_with_passphrase_only_uses_the_keyring_key() -> None:
    request = make_request(signing_key=KEY_ID, gpg_passphrase=PASSPHRASE)
    assert request.gpg_private_key is None
    assert request.gpg_passphrase is not None
    assert request.gpg_passphrase.get_secret_value() == PASSPHRASE


def test_an_at_path_passphrase_is_read_from_that_file(tmp_path: Path) -> None:
    (tmp_path / "passphrase").write_text(PASSPHRASE + "\n", encoding="utf-8")
    request = make_request(signing_key=KEY_ID, gpg_passphrase=f"@{tmp_path}/passphrase")
    assert request.gpg_passphrase is not None
    assert request.gpg_passphrase.get_secret_value() == PASSPHRASE
    with pytest.raises(ConfigurationError, match=r"--gpg-passphrase: cannot read .*missing: no such file"):
        make_request(signing_key=KEY_ID, gpg_passphrase=f"@{tmp_path}/missing")


def test_secrets_are_secret_types_whose_repr_hides_them() -> None:
    request = make_request(signing_key=KEY_ID, gpg_private_key=ARMORED_KEY_B64, gpg_passphrase=PASSPHRASE)
    assert isinstance(request.gpg_private_key, SecretBytes)
    assert isinstance(request.gpg_passphrase, SecretStr)
    assert request.gpg_private_key.get_secret_value() == ARMORED_KEY.strip().encode()
    assert request.gpg_passphrase.get_secret_value() == PASSPHRASE
    for rendering in (
        repr(request.gpg_private_key),
        repr(request.gpg_passphrase),
        str(request.gpg_private_key),
        str(request.gpg_passphrase),
        repr(request),
        str(request),
        request.model_dump_json(),
    ):
        assert "TOPSECRET" not in rendering
        assert PASSPHRASE not in rendering


def test_passphrase_comes_from_environment_when_option_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_FACTORY_GPG_PASSPHRASE", "from-the-environment")
    request = make_request(signing_key=KEY_ID)
    assert request.gpg_passphrase is not None
    assert request.gpg_passphrase.get_secret_value() == "from-the-environment"


def test_passphrase_option_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_FACTORY_GPG_PASSPHRASE", "from-the-environment")
    request = make_request(signing_key=KEY_ID, gpg_passphrase="from-the-option")
    assert request.gpg_passphrase is not None
    assert request.gpg_passphrase.get_secret_value() == "from-the-option"


def test_private_key_comes_from_environment_when_option_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_FACTORY_GPG_PRIVATE_KEY", ARMORED_KEY_B64)
    request = make_request(signing_key=KEY_ID)
    assert request.gpg_private_key is not None
    assert request.gpg_private_key.get_secret_value() == ARMORED_KEY.strip().encode()


def test_private_key_option_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_FACTORY_GPG_PRIVATE_KEY", "not base64 !!! and never read")
    request = make_request(signing_key=KEY_ID, gpg_private_key=ARMORED_KEY)
    assert request.gpg_private_key is not None
    assert request.gpg_private_key.get_secret_value() == ARMORED_KEY.strip().encode()


def test_empty_secret_environment_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_FACTORY_GPG_PRIVATE_KEY", "")
    monkeypatch.setenv("SLURM_FACTORY_GPG_PASSPHRASE", "")
    request = make_request()
    assert request.gpg_private_key is None
    assert request.gpg_passphrase is None


@pytest.mark.parametrize(
    "given",
    [
        pytest.param(ARMORED_KEY, id="armored-directly"),
        pytest.param("\n  " + ARMORED_KEY, id="armored-with-leading-whitespace"),
        pytest.param(ARMORED_KEY_B64, id="base64-of-armored"),
        pytest.param(
            "\n".join(ARMORED_KEY_B64[i : i + 76] for i in range(0, len(ARMORED_KEY_B64), 76)),
            id="base64-of-armored-wrapped",
        ),
    ],
)
def test_armored_private_key_is_accepted_directly_or_as_base64(given: str) -> None:
    request = make_request(signing_key=KEY_ID, gpg_private_key=given)
    assert request.gpg_private_key is not None
    assert request.gpg_private_key.get_secret_value() == ARMORED_KEY.strip().encode()


def test_base64_of_a_binary_private_key_is_accepted() -> None:
    request = make_request(signing_key=KEY_ID, gpg_private_key=base64.b64encode(BINARY_KEY).decode())
    assert request.gpg_private_key is not None
    assert request.gpg_private_key.get_secret_value() == BINARY_KEY


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(ARMORED_KEY.encode(), ARMORED_KEY.strip().encode(), id="armored-file"),
        pytest.param(BINARY_KEY, BINARY_KEY, id="binary-file"),
        pytest.param(ARMORED_KEY_B64.encode() + b"\n", ARMORED_KEY.strip().encode(), id="base64-file"),
    ],
)
def test_private_key_is_read_from_an_at_path(content: bytes, expected: bytes, tmp_path: Path) -> None:
    key_file = tmp_path / "signing.key"
    key_file.write_bytes(content)
    request = make_request(signing_key=KEY_ID, gpg_private_key=f"@{key_file}")
    assert request.gpg_private_key is not None
    assert request.gpg_private_key.get_secret_value() == expected


def test_publish_with_signing_key_is_accepted() -> None:
    request = make_request(publish="all", signing_key=KEY_ID, gpg_private_key=ARMORED_KEY)
    assert request.publish is PublishMode.ALL
    assert request.signs is True


def test_absolute_publish_url_path_becomes_a_file_url(tmp_path: Path) -> None:
    request = make_request(publish="slurm", signing_key=KEY_ID, publish_url=str(tmp_path / "mirror"))
    assert request.publish_url == f"file://{tmp_path / 'mirror'}"


def test_home_relative_publish_url_path_becomes_an_absolute_file_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    request = make_request(publish="slurm", signing_key=KEY_ID, publish_url="~/mirror")
    assert request.publish_url == f"file://{tmp_path.resolve() / 'mirror'}"


def test_dot_relative_buildcache_url_path_becomes_an_absolute_file_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mirror").mkdir()
    request = make_request(buildcache="deps", buildcache_url="./mirror")
    assert request.buildcache_url == f"file://{tmp_path.resolve() / 'mirror'}"


def test_a_file_buildcache_url_must_name_an_existing_directory(tmp_path: Path) -> None:
    (tmp_path / "mirror").mkdir()
    url = (tmp_path / "mirror").as_uri()
    assert make_request(buildcache="all", buildcache_url=url).buildcache_url == url
    with pytest.raises(ConfigurationError) as raised:
        make_request(buildcache="all", buildcache_url=(tmp_path / "missing").as_uri())
    assert raised.value.exit_code == EXIT_USAGE
    assert "--buildcache-url" in raised.value.message and "no such directory" in raised.value.message


@pytest.mark.parametrize("url", ["s3://bucket/prefix", "file:///srv/mirror"])
def test_publish_url_is_kept_when_already_a_supported_url(url: str) -> None:
    assert make_request(publish="deps", signing_key=KEY_ID, publish_url=url).publish_url == url


@pytest.mark.parametrize("url", ["s3://bucket/prefix", "https://cache.example.org/mirror", "http://10.0.0.1/m"])
def test_buildcache_url_is_kept_when_already_a_supported_url(url: str) -> None:
    assert make_request(buildcache="all", buildcache_url=url).buildcache_url == url


def test_buildcache_url_is_accepted_with_use_local_buildcache_alone() -> None:
    request = make_request(use_local_buildcache=True, buildcache_url="s3://bucket/cache")
    assert request.buildcache is BuildcacheMode.NONE
    assert request.buildcache_url == "s3://bucket/cache"


def test_relative_slurm_source_path_is_resolved_to_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "slurm-24-11-5-1.tar.gz").write_bytes(b"not really a tarball")
    monkeypatch.chdir(tmp_path)
    request = make_request(slurm_version="24.11.5", slurm_source="slurm-24-11-5-1.tar.gz")
    assert request.slurm_source == str(tmp_path.resolve() / "slurm-24-11-5-1.tar.gz")
    assert Path(request.slurm_source).is_absolute()


def test_file_url_slurm_source_becomes_a_local_absolute_path(tmp_path: Path) -> None:
    tarball = tmp_path / "slurm.tar.gz"
    tarball.write_bytes(b"x")
    request = make_request(slurm_source=f"file://{tarball}")
    assert request.slurm_source == str(tarball.resolve())


@pytest.mark.parametrize(
    "url",
    [
        "https://download.example.org/slurm-24-11-5-1.tar.gz",
        "http://10.0.0.5/slurm-24-11-5-1.tar.gz",
    ],
)
def test_http_slurm_source_is_kept_verbatim(url: str) -> None:
    assert make_request(slurm_source=url).slurm_source == url


def test_native_engine_with_gpu_is_accepted_on_a_toolchain_packaging_nvml() -> None:
    request = make_request(engine="native", gpu=True, toolchain="trixie")
    assert request.engine is Engine.NATIVE
    assert request.gpu is True


def test_native_engine_can_publish_slurm() -> None:
    request = make_request(engine=Engine.NATIVE, publish="slurm", signing_key=KEY_ID, toolchain="rockylinux9")
    assert request.engine is Engine.NATIVE
    assert request.publish is PublishMode.SLURM


def test_spack_engine_accepts_the_spack_only_options() -> None:
    request = make_request(
        toolchain="rockylinux8",
        gpu=True,
        buildcache="all",
        use_local_buildcache=True,
        compiler_version="10.5.0",
        enable_hierarchy=True,
    )
    assert request.compiler_version == "10.5.0"
    assert request.buildcache is BuildcacheMode.ALL
    assert request.enable_hierarchy is True
    assert request.use_local_buildcache is True


def test_enum_members_and_their_values_are_both_accepted() -> None:
    by_member = make_request(engine=Engine.NATIVE, buildcache=BuildcacheMode.NONE, publish=PublishMode.NONE)
    by_value = make_request(engine="native", buildcache="none", publish="none")
    assert by_member == by_value


def test_build_request_is_frozen() -> None:
    request = make_request()
    with pytest.raises(ValueError):
        request.gpu = True


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: {"engine": "native", "spack_source": str(tmp)}, "needs the Spack engine"),
        (lambda tmp: {"spack_source": str(tmp)}, "not a Spack checkout"),
        (lambda tmp: {"spack_source": str(tmp / "missing.tar.gz")}, "no such directory or .tar.gz file"),
        (lambda tmp: {"spack_source": "ftp://mirror.example.org/spack.tar.gz"}, "unsupported scheme"),
    ],
)
def test_bad_spack_source_is_a_usage_error(tmp_path: Path, make: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        make_request(slurm_version="24.11.5", toolchain="trixie", **make(tmp_path))
    assert caught.value.exit_code == 2
    assert "--spack-source" in str(caught.value)
    assert message in str(caught.value)


def test_spack_source_accepts_a_checkout_a_tarball_and_a_url(tmp_path: Path) -> None:
    checkout = tmp_path / "spack"
    (checkout / "bin").mkdir(parents=True)
    (checkout / "bin" / "spack").write_text("#!/bin/sh\n")
    tarball = tmp_path / "spack-1.1.0.tar.gz"
    tarball.write_bytes(b"\x1f\x8b")
    for source, expected in (
        (str(checkout), str(checkout)),
        (str(tarball), str(tarball)),
        ("https://mirror.example.org/spack-1.1.0.tar.gz", "https://mirror.example.org/spack-1.1.0.tar.gz"),
    ):
        request = make_request(slurm_version="24.11.5", toolchain="trixie", spack_source=source)
        assert request.spack_source == expected


@pytest.mark.parametrize("endpoint", ["127.0.0.1:9000", "ftp://store.example.org", "http://"])
def test_s3_endpoint_must_be_an_http_url(endpoint: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        make_request(buildcache="all", buildcache_url="s3://cache", s3_endpoint_url=endpoint)
    assert raised.value.exit_code == EXIT_USAGE
    assert raised.value.message.startswith(f"--s3-endpoint-url {endpoint!r}")


def test_a_bad_s3_endpoint_in_the_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "store:9000")
    with pytest.raises(ConfigurationError) as raised:
        make_request(buildcache="all", buildcache_url="s3://cache")
    assert raised.value.message.startswith("AWS_ENDPOINT_URL_S3 'store:9000'")


def test_an_s3_endpoint_variable_is_ignored_without_an_s3_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "not a url at all")
    assert make_request().s3_endpoint_url is None


def _packages_checkout(root: Path) -> Path:
    (root / "repos" / "spack_repo" / "builtin").mkdir(parents=True)
    (root / "repos" / "spack_repo" / "builtin" / "repo.yaml").write_text("repo:\n  namespace: builtin\n")
    return root


def _wheels(root: Path, *names: str) -> Path:
    root.mkdir(parents=True)
    for name in names:
        (root / name).write_bytes(b"wheel")
    return root


def test_spack_packages_source_accepts_a_checkout_a_tarball_or_a_url(tmp_path: Path) -> None:
    checkout = _packages_checkout(tmp_path / "spack-packages")
    assert make_request(spack_packages_source=str(checkout)).spack_packages_source == str(checkout)
    tarball = tmp_path / "spack-packages.tar.gz"
    tarball.write_bytes(b"tar")
    assert make_request(spack_packages_source=str(tarball)).spack_packages_source == str(tarball)
    url = "https://mirror.example.org/spack-packages-119680a.tar.gz"
    assert make_request(spack_packages_source=url).spack_packages_source == url


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("spack_packages_source", "is not a spack-packages checkout (no repos/spack_repo/builtin/repo.yaml)"),
        ("python_wheels", "no wheel of clingo, boto3 in it"),
    ],
)
def test_air_gapped_inputs_that_are_not_what_they_claim_are_refused(tmp_path: Path, option: str, message: str) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigurationError) as raised:
        make_request(**{option: str(tmp_path / "empty")})
    assert raised.value.exit_code == EXIT_USAGE
    assert message in raised.value.message


def test_python_wheels_need_clingo_and_boto3_and_name_what_is_missing(tmp_path: Path) -> None:
    partial = _wheels(tmp_path / "partial", "clingo-5.8.3-cp313-cp313-manylinux_2_28_x86_64.whl")
    with pytest.raises(ConfigurationError) as raised:
        make_request(python_wheels=str(partial))
    assert "no wheel of boto3" in raised.value.message
    assert raised.value.hint is not None and "pip download" in raised.value.hint
    complete = _wheels(tmp_path / "complete", "clingo-5.8.3-cp313-cp313-manylinux_2_28_x86_64.whl",
                       "boto3-1.44.8-py3-none-any.whl")  # fmt: skip
    assert make_request(python_wheels=str(complete)).python_wheels == str(complete)


def test_a_directory_named_like_a_wheel_is_not_one(tmp_path: Path) -> None:
    wheels = _wheels(tmp_path / "wheels", "boto3-1.44.8-py3-none-any.whl")
    (wheels / "clingo-5.8.3-cp313-cp313-manylinux_2_28_x86_64.whl").mkdir()
    with pytest.raises(ConfigurationError, match="no wheel of clingo in it"):
        make_request(python_wheels=str(wheels))


def test_python_wheels_need_a_clingo_wheel_for_the_machine_the_build_runs_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("slurm_factory.request.host_arch", lambda: Arch.AMD64)
    x86_64 = _wheels(tmp_path / "x86_64", "clingo-5.8.3-cp313-cp313-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
                     "boto3-1.44.8-py3-none-any.whl")  # fmt: skip
    with pytest.raises(ConfigurationError) as raised:
        make_request(toolchain="trixie", arch="arm64", python_wheels=str(x86_64))
    assert "no clingo wheel for aarch64 (arm64) in it, only clingo-5.8.3-cp313" in raised.value.message
    assert raised.value.hint is not None and "--platform manylinux_2_28_aarch64" in raised.value.hint
    aarch64 = _wheels(tmp_path / "aarch64", "clingo-5.8.3-cp313-cp313-manylinux_2_28_aarch64.whl",
                      "boto3-1.44.8-py3-none-any.whl")  # fmt: skip
    assert make_request(toolchain="trixie", arch="arm64", python_wheels=str(aarch64)).python_wheels == str(aarch64)
    with pytest.raises(ConfigurationError, match=r"no clingo wheel for x86_64 \(amd64\)"):
        make_request(toolchain="trixie", python_wheels=str(aarch64))
    request = make_compiler_request(compiler_version="13.4.0", toolchain="trixie", arch="arm64",
                                    python_wheels=str(aarch64))  # fmt: skip
    assert request.python_wheels == str(aarch64)


@pytest.mark.parametrize("option", ["spack_packages_source", "python_wheels"])
def test_air_gapped_spack_inputs_need_the_spack_engine(tmp_path: Path, option: str) -> None:
    _packages_checkout(tmp_path / "source")
    with pytest.raises(ConfigurationError) as raised:
        make_request(engine="native", toolchain="trixie", **{option: str(tmp_path / "source")})
    assert "needs the Spack engine" in raised.value.message


@pytest.mark.parametrize(
    ("url", "printed"),
    [
        ("https://user:secretpw@127.0.0.1:1/x.tar.gz", "https://***@127.0.0.1:1/x.tar.gz"),
        ("https://token@host/x.tar.gz?a=1", "https://***@host/x.tar.gz?a=1"),
        ("https://host/slurm-24.11.5.tar.gz", "https://host/slurm-24.11.5.tar.gz"),
        ("/srv/src/user@site/slurm.tar.gz", "/srv/src/user@site/slurm.tar.gz"),
    ],
)
def test_credentials_in_a_url_are_never_printed(url: str, printed: str) -> None:
    assert without_credentials(url) == printed


def test_a_dry_run_prints_no_password_of_a_source_url(capsys: pytest.CaptureFixture[str]) -> None:
    from slurm_factory import cli

    url = "https://user:secretpw@127.0.0.1:1/slurm-24.11.5.tar.gz"
    with pytest.raises(SystemExit) as exited:
        cli.app(["build-slurm", "--engine", "native", "--toolchain", "trixie", "--slurm-version", "24.11.5",
                 "--slurm-source", url, "--dry-run"])  # fmt: skip
    captured = capsys.readouterr()
    assert exited.value.code == 0
    assert "https://***@127.0.0.1:1/slurm-24.11.5.tar.gz" in captured.out
    assert "secretpw" not in captured.out + captured.err


def test_the_homes_releases_file_is_read_and_a_directory_in_its_place_is_refused(tmp_path: Path) -> None:
    site_sha = "a" * 64
    (tmp_path / "releases.tsv").write_text(f"26-05-5-1\t{site_sha}\t2026-10-01\n", encoding="utf-8")

    request = make_request(home=tmp_path, slurm_version="26.05.5")

    assert (request.slurm.tag, request.slurm.sha256) == ("26-05-5-1", site_sha)
    (tmp_path / "releases.tsv").unlink()
    (tmp_path / "releases.tsv").mkdir()
    with pytest.raises(ConfigurationError, match=r"the site releases file .*: not a regular file"):
        make_request(home=tmp_path, slurm_version="24.11.5")


def test_a_broken_link_as_the_releases_file_is_said_to_be_one(tmp_path: Path) -> None:
    link = tmp_path / "releases.tsv"
    link.symlink_to(tmp_path / "gone.tsv")

    with pytest.raises(ConfigurationError, match=r"a broken symbolic link \(to .*gone\.tsv"):
        make_request(releases_file=str(link))
