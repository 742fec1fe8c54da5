"""With a real Spack checkout (`SLURM_FACTORY_TEST_SPACK_ROOT`) and a real S3 endpoint (moto's server, signatures
checked): the publish mirror, bootstrap settings and S3 credentials files slurm-factory generates let Spack push a
signed buildcache to S3, and a fresh install tree installs from it after trusting the key it published.

The environment is the generated one with its specs replaced by one package that installs offline in seconds
(tests/spack/repo); the signing follows templates/spack/_signing.sh.j2 (key exported by SigningKey, loopback
pinentry, passphrase file, `spack -e ENV gpg trust`)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from slurm_factory.config import Settings
from slurm_factory.plan import make_plan, write_plan_dir
from slurm_factory.plan.spack import PUBLISH_MIRROR
from slurm_factory.request import make_request
from slurm_factory.s3 import S3Access
from slurm_factory.secret_input import decode_private_key
from slurm_factory.signing import SECRET_KEY_FILE, SECRET_PASSPHRASE_FILE, SigningKey
from tests.e2e.helpers import make_throwaway_key, report_measurement
from tests.s3server import S3Server

SPACK_ROOT = os.environ.get("SLURM_FACTORY_TEST_SPACK_ROOT")
TEST_REPO = Path(__file__).parent / "repo" / "spack_repo" / "sf_test"
pytestmark = [
    pytest.mark.spack,
    pytest.mark.skipif(
        not SPACK_ROOT, reason="SLURM_FACTORY_TEST_SPACK_ROOT is unset: no Spack checkout to push a buildcache with"
    ),
]


def _spack(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [f"{SPACK_ROOT}/bin/spack", *args], capture_output=True, text=True, env=env, timeout=900, check=False
    )
    assert done.returncode == 0, f"spack {' '.join(args)}:\n{done.stderr[-4000:]}\n{done.stdout[-2000:]}"
    return done


def _environment(generated: dict[str, Any], directory: Path, tree: Path) -> Path:
    """The generated mirrors and bootstrap settings; our test package instead of Slurm; paths under `tree`."""
    spack = generated["spack"]
    document = {
        "spack": {
            "specs": ["sf-hello"],
            "repos": {"sf_test": str(TEST_REPO)},
            "view": False,
            "config": {"install_tree": {"root": str(tree / "opt")}, "build_stage": [str(tree / "stage")]},
            "bootstrap": spack["bootstrap"],
            "mirrors:": {PUBLISH_MIRROR: spack["mirrors:"][PUBLISH_MIRROR]},
        }
    }
    directory.mkdir(parents=True)
    (directory / "spack.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return directory


def _secrets_like_the_container(
    directory: Path, key: SigningKey, access: S3Access, process_env: dict[str, str]
) -> dict[str, str]:
    """The files a build container gets on its tmpfs, and the GnuPG home _signing.sh.j2 makes there."""
    directory.mkdir(mode=0o700)
    for name, data in {**key.secret_files(), **access.credential_files()}.items():
        (directory / name).write_bytes(data)
    gnupg = directory / "gnupg"
    gnupg.mkdir(mode=0o700)
    (gnupg / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")
    (gnupg / "gpg.conf").write_text(f"pinentry-mode loopback\npassphrase-file {directory / SECRET_PASSPHRASE_FILE}\n")
    return {**process_env, "SPACK_GNUPGHOME": str(gnupg)}


def test_generated_s3_publish_mirror_takes_a_signed_push_that_a_fresh_tree_installs(
    tmp_path: Path, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_server.new_bucket()
    request = make_request(
        slurm_version="24.11.5", toolchain="trixie", publish="all", signing_key="0x0123456712345678",
        publish_url=f"s3://{bucket}/spack", s3_endpoint_url=s3_server.endpoint,
    )  # fmt: skip
    plan = make_plan(request, Settings(project_name="s3-push", home=tmp_path / "home"))
    write_plan_dir(plan, tmp_path / "plan")
    generated = yaml.safe_load((tmp_path / "plan" / "spack.yaml").read_text())
    throwaway = make_throwaway_key(tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    base_env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "SPACK_GNUPGHOME"))}
    base_env.update({name: value for name, value in plan.container.environment.items() if name.startswith("AWS_")})
    secrets = tmp_path / "secrets"
    base_env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(secrets / "aws-credentials"), AWS_CONFIG_FILE=str(secrets / "aws-config")
    )
    with (
        SigningKey(
            throwaway.fingerprint, decode_private_key(f"@{throwaway.key_file}"), SecretStr(throwaway.passphrase)
        ) as key,
        S3Access(s3_server.endpoint, required=True, purpose="--publish-url") as access,
    ):
        env = _secrets_like_the_container(secrets, key, access, base_env)
        producer = _environment(generated, tmp_path / "producer", tmp_path / "tree-producer")
        started = time.monotonic()
        _spack("-e", str(producer), "install", env=env)
        _spack("-e", str(producer), "gpg", "trust", str(secrets / SECRET_KEY_FILE), env=env)
        _spack("-e", str(producer), "buildcache", "push", "--key", key.fingerprint, "--update-index",
               PUBLISH_MIRROR, env=env)  # fmt: skip
        pushed = time.monotonic() - started
    keys = sorted(name for name in s3_server.objects(bucket) if name.startswith("spack/v3/manifests/"))
    assert [name for name in keys if "/spec/sf-hello/" in name], keys
    assert [name for name in keys if name.endswith(f"{key.fingerprint}.key.manifest.json")], keys
    assert "spack/v3/manifests/index/index.manifest.json" in keys

    consumer_home = tmp_path / "consumer-gnupg"
    consumer_home.mkdir(mode=0o700)
    consumer_env = {**env, "SPACK_GNUPGHOME": str(consumer_home)}
    consumer = _environment(generated, tmp_path / "consumer", tmp_path / "tree-consumer")
    _spack("-e", str(consumer), "buildcache", "keys", "--install", "--trust", env=consumer_env)
    installed = _spack("-e", str(consumer), "install", "--use-buildcache", "only", env=consumer_env)
    assert "sf-hello" in installed.stdout
    [script] = (tmp_path / "tree-consumer" / "opt").rglob("bin/sf-hello")
    assert subprocess.run([str(script)], capture_output=True, text=True, check=True).stdout == "hello from sf-hello\n"
    report_measurement(f"spack signed push of one package to S3 (install + trust + push): {pushed:.0f}s")
