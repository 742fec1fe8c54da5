"""End to end: the signed native build — `.asc` accepted by plain `gpg --verify`, the mirror layout, and not one
byte of a secret in any process's argv or environment, any container, any image, or any log."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from slurm_factory.artifact import debug_companion
from tests.conftest import slurm_source_tarball
from tests.e2e.helpers import ARTIFACT, SecretScanner, make_throwaway_key, run_cli
from tests.e2e.shared_builds import Builds
from tests.s3server import S3Server

pytestmark = [pytest.mark.e2e, pytest.mark.docker]


def _gpg_verify(tmp_path: Path, public_key: Path, signature: Path, data: Path) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "consumer-gnupg"
    home.mkdir(mode=0o700, parents=True)
    try:
        subprocess.run(
            ["gpg", "--homedir", str(home), "--batch", "--import", str(public_key)], check=True, capture_output=True
        )
        return subprocess.run(
            ["gpg", "--homedir", str(home), "--batch", "--verify", str(signature), str(data)],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)


def test_signature_verifies_with_plain_gpg_and_a_flipped_byte_fails(builds: Builds, tmp_path: Path) -> None:
    result = builds.warm.result
    signature = Path(result["signature"])
    public_key = Path(result["public_key"])
    assert signature == builds.warm.link.with_name(ARTIFACT + ".asc")
    assert signature.resolve() == builds.warm.artifact.with_name(ARTIFACT + ".asc")
    assert public_key.name == f"{builds.key.fingerprint[-16:]}.pub.asc"
    good = (
        _gpg_verify(tmp_path / "good", public_key, signature, builds.warm.artifact)
        if (tmp_path / "good").mkdir() is None
        else None
    )
    assert good is not None and good.returncode == 0, good.stderr if good else ""
    tampered = tmp_path / ARTIFACT
    shutil.copyfile(builds.warm.artifact, tampered)
    with tampered.open("r+b") as stream:
        stream.seek(tampered.stat().st_size // 2)
        byte = stream.read(1)
        stream.seek(-1, 1)
        stream.write(bytes([byte[0] ^ 0xFF]))
    bad = _gpg_verify(tmp_path / "bad", public_key, signature, tampered)
    assert bad.returncode != 0
    assert "BAD signature" in bad.stderr


def test_publish_writes_the_documented_mirror_layout(builds: Builds) -> None:
    series = builds.mirror / "trixie" / "24.11"
    companion = debug_companion(Path(ARTIFACT)).name
    for name in (ARTIFACT, ARTIFACT + ".asc", ARTIFACT + ".sha256", ARTIFACT + ".manifest.json",
                 companion, companion + ".sha256", companion + ".asc"):  # fmt: skip
        assert (series / name).is_file(), name
    assert hashlib.sha256((series / ARTIFACT).read_bytes()).hexdigest() == builds.cold.result["sha256"]
    assert (builds.mirror / "keys" / f"{builds.key.fingerprint[-16:]}.pub.asc").is_file()
    index = json.loads((builds.mirror / "index.json").read_text())
    [entry] = index["artifacts"]
    assert entry["path"] == f"trixie/24.11/{ARTIFACT}"
    assert entry["sha256"] == builds.cold.result["sha256"]
    assert entry["signature"] == f"trixie/24.11/{ARTIFACT}.asc"
    assert not [p for p in builds.mirror.rglob(".*")], "temporary files left in the mirror"


def test_publish_to_s3_uploads_an_artifact_a_site_verifies_with_the_key_from_the_bucket(
    builds: Builds, tmp_path: Path
) -> None:
    objects = builds.s3.objects(builds.bucket)
    key_name = f"{builds.key.fingerprint[-16:]}.pub.asc"
    suffixes = ("", ".asc", ".sha256", ".manifest.json", ".sbom.json", ".sbom.json.asc")
    expected = {f"slurm/trixie/24.11/{ARTIFACT}{suffix}" for suffix in suffixes}
    companion = debug_companion(Path(ARTIFACT)).name
    expected |= {f"slurm/trixie/24.11/{companion}{suffix}" for suffix in ("", ".sha256", ".asc")}
    assert set(objects) == {*expected, f"slurm/keys/{key_name}", "slurm/index.json"}
    assert objects[f"slurm/trixie/24.11/{ARTIFACT}"] == builds.warm.artifact.read_bytes()
    [entry] = json.loads(objects["slurm/index.json"])["artifacts"]
    assert entry["sha256"] == builds.warm.result["sha256"] and entry["public_key"] == f"keys/{key_name}"
    assert builds.warm.result["publication"]["root"] == f"s3://{builds.bucket}/slurm"
    downloaded = tmp_path / "download"
    downloaded.mkdir()
    for name in (ARTIFACT, ARTIFACT + ".asc", key_name):
        source = f"slurm/keys/{name}" if name == key_name else f"slurm/trixie/24.11/{name}"
        (downloaded / name).write_bytes(objects[source])
    verified = _gpg_verify(
        tmp_path / "site", downloaded / key_name, downloaded / (ARTIFACT + ".asc"), downloaded / ARTIFACT
    )
    assert verified.returncode == 0, verified.stderr


def test_a_publish_to_s3_with_refused_credentials_fails_before_the_build(s3_server: S3Server, tmp_path: Path) -> None:
    key = make_throwaway_key(tmp_path)
    home = tmp_path / "home"
    wrong = s3_server.write_credentials(tmp_path / "aws", secret="not-what-the-server-knows")
    done = run_cli(
        home, "sf-e2e-refused", "build-slurm", "--engine", "native", "--toolchain", "trixie",
        "--slurm-version", "24.11.5", "--slurm-source", str(slurm_source_tarball()),
        "--signing-key", key.fingerprint, "--gpg-private-key", f"@{key.key_file}",
        "--gpg-passphrase-file", str(key.passphrase_file), "--publish", "slurm",
        "--publish-url", f"s3://{s3_server.new_bucket()}/slurm", "--s3-endpoint-url", s3_server.endpoint, env=wrong,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    [error] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert "the S3 credentials are refused" in error
    assert "not-what-the-server-knows" not in done.stderr + done.stdout
    [log] = (home / "logs").glob("*.log")
    assert "stage: image" not in log.read_text() and "build container" not in log.read_text()


def test_no_secret_appears_in_processes_containers_images_or_logs(builds: Builds) -> None:
    leaks = builds.leaks
    assert leaks.polls > 20, "the watch did not observe the build"
    assert leaks.containers_seen, "the watch saw none of the build's containers"
    assert builds.images_scanned >= 3, "toolchain and verification images should have been scanned"
    scanner = SecretScanner(builds.key, others=(builds.s3.secret_access_key,))
    logs = sorted((builds.warm.home / "logs").glob("*.log"))
    assert logs
    for path in logs:
        leaks.scan_file(path)
    findings = [*leaks.findings]
    if scanner.count(builds.warm.output.encode()):
        findings.append("CLI stdout/stderr")
    assert findings == []
    # the scanner itself finds the secret where it is (the key file handed to the CLI): the check can fail
    assert scanner.count(builds.key.key_file.read_bytes()) > 0
    assert scanner.count(builds.key.passphrase_file.read_bytes()) == 1
    assert scanner.count(builds.s3_credentials.read_bytes()) == 1


def test_verify_checks_the_signature_with_the_given_public_key(builds: Builds, tmp_path: Path) -> None:
    warm = builds.warm
    done = run_cli(
        warm.home, warm.project, "verify", str(warm.artifact), "--public-key", warm.result["public_key"], "--json"
    )
    assert done.returncode == 0, done.stderr
    checks = {entry["name"]: entry for entry in json.loads(done.stdout)["checks"]}
    assert checks["signature"]["passed"] is True
    assert builds.key.fingerprint in checks["signature"]["summary"]

    stranger = make_throwaway_key(tmp_path)
    public = tmp_path / "stranger.pub.asc"
    subprocess.run(
        ["gpg", "--homedir", str(tmp_path / "gnupg"), "--armor", "--export", stranger.fingerprint],
        stdout=public.open("w"),
        check=True,
    )
    copy = tmp_path / "copy" / ARTIFACT  # a failed verification marks the manifest: keep the shared artifact clean
    copy.parent.mkdir()
    for suffix in ("", ".asc"):
        shutil.copyfile(warm.artifact.with_name(ARTIFACT + suffix), copy.with_name(ARTIFACT + suffix))
    done = run_cli(warm.home, warm.project, "verify", str(copy), "--public-key", str(public), "--json")
    assert done.returncode == 1
    checks = {entry["name"]: entry for entry in json.loads(done.stdout)["checks"]}
    assert checks["signature"]["passed"] is False
    assert checks["static: RUNPATH"]["passed"] is True, "the host checks still read it"
    for stage in ("images", "relocated", "cluster"):
        assert checks[stage]["not_run"] is True, "an artifact that is not the key holder's is never run"
