"""An S3 peer for the tests: moto's server on 127.0.0.1 in a subprocess, speaking S3 over HTTP and checking every
request's SigV4 signature against an IAM user it creates at start (wrong secrets are refused with 403)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

# The first requests are let through unsigned to create the IAM user, its policy and its key; then every request
# must be signed with that key.
_BOOTSTRAP_REQUESTS = 3
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key_id: str
    secret_access_key: str

    def client(self, secret: str | None = None) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=secret or self.secret_access_key,
        )

    def new_bucket(self) -> str:
        name = f"sf-test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str) -> dict[str, bytes]:
        client = self.client()
        listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
        return {item["Key"]: client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() for item in listed}

    def user_limited_to(self, bucket: str, prefix: str) -> tuple[str, str]:
        """A new IAM user who may write, read and delete only under `prefix` (a shared store's usual grant)."""
        iam = boto3.client(
            "iam",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )
        name = f"limited-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=name)
        objects = {"Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
                   "Resource": f"arn:aws:s3:::{bucket}/{prefix}/*"}  # fmt: skip
        listing = {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}",
                   "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*"]}}}  # fmt: skip
        policy = {"Version": "2012-10-17", "Statement": [objects, listing]}
        iam.put_user_policy(UserName=name, PolicyName="prefix", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def write_credentials(self, directory: Path, secret: str | None = None) -> dict[str, str]:
        """An AWS shared-credentials file and config file; the environment that points boto3 at them."""
        directory.mkdir(parents=True, exist_ok=True)
        credentials, config = directory / "credentials", directory / "config"
        credentials.write_text(
            f"[default]\naws_access_key_id = {self.access_key_id}\n"
            f"aws_secret_access_key = {secret or self.secret_access_key}\n"
        )
        credentials.chmod(0o600)
        config.write_text(f"[default]\nregion = {REGION}\n")
        return {"AWS_SHARED_CREDENTIALS_FILE": str(credentials), "AWS_CONFIG_FILE": str(config)}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto server did not start within 30 s")


@contextmanager
def running_s3_server(log: Path, *, authenticated: bool = True) -> Iterator[S3Server]:
    """With `authenticated`, every request after the bootstrap must be signed with the user's key; without, the
    server answers anyone (a public mirror)."""
    port = _free_port()
    environment = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    if authenticated:
        environment["INITIAL_NO_AUTH_ACTION_COUNT"] = str(_BOOTSTRAP_REQUESTS)
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for(port, process)
        endpoint = f"http://127.0.0.1:{port}"
        bootstrap = {"aws_access_key_id": "bootstrap", "aws_secret_access_key": "bootstrap"}
        iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION, **bootstrap)
        iam.create_user(UserName="slurm-factory")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="slurm-factory", PolicyName="all", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="slurm-factory")["AccessKey"]
        yield S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
