"""The REST API of the check cluster: slurmrestd from its unit (`SLURM_JWT=daemon`), asked from the login node with
a token `scontrol token` made for the user — ping, a job submitted, seen completing by slurmctld and found in
slurmdbd — and refused without a token or with one signed by another key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any

from slurm_factory.verify.cluster import ACCOUNT, CONTROLLER, LOGIN, REST_PORT, REST_SECURITY, USER, Cluster
from slurm_factory.verify.report import CheckRecorder, VerificationReport, check

_VERSION = re.compile(r"\bv(\d+)\.(\d+)\.(\d+)\b")
OK = 200
UNAUTHORIZED = 401


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any] | None
    text: str


def forged_token(user: str, lifespan: int = 600) -> str:
    """An HS256 JWT for `user` signed with a key of its own: well-formed, but no key slurmctld trusts."""

    def encoded(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    now = int(time.time())
    header = encoded(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = encoded(json.dumps({"exp": now + lifespan, "iat": now, "sun": user}).encode())
    signature = hmac.new(os.urandom(32), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{encoded(signature)}"


def newest_data_parser(listing: str) -> str | None:
    """The newest `vX.Y.Z` in `slurmrestd -d list`'s output: the API version the release ships."""
    versions = {tuple(int(part) for part in match.groups()) for match in _VERSION.finditer(listing)}
    return "v{}.{}.{}".format(*max(versions)) if versions else None


def _request(
    cluster: Cluster, path: str, token: str | None, *, method: str = "GET", body: dict[str, Any] | None = None
) -> Answer:
    command = ["curl", "--silent", "--max-time", str(30 * cluster.patience), "--write-out", "\n%{http_code}",
               "-X", method, "-H", "Content-Type: application/json"]  # fmt: skip
    if token is not None:
        command += ["-H", f"X-SLURM-USER-NAME: {USER}", "-H", f"X-SLURM-USER-TOKEN: {token}"]
    if body is not None:
        command += ["--data", json.dumps(body)]
    _, output = cluster.nodes[LOGIN].run([*command, f"http://{CONTROLLER}:{REST_PORT}{path}"])
    text, _, status = output.rstrip("\n").rpartition("\n")
    try:
        parsed = json.loads(text) if text.strip() else None
    except ValueError:
        parsed = None
    return Answer(int(status) if status.isdigit() else 0, parsed if isinstance(parsed, dict) else None, text)


def _errors(answer: Answer) -> list[str]:
    errors = (answer.body or {}).get("errors") or []
    shown = [
        ": ".join(str(error[key]) for key in ("error", "description") if error.get(key)) or str(error)
        for error in errors
        if isinstance(error, dict)
    ]
    return [f"HTTP {answer.status}", *shown[:3]] if shown else [f"HTTP {answer.status}", answer.text[-200:]]


def _states(value: Any) -> list[str]:
    """A job state as the data parsers write it: a list (v0.0.40 on), or a string."""
    if isinstance(value, list):
        return [str(item) for item in value]
    return [str(value)] if value else []


def check_rest(cluster: Cluster, report: VerificationReport) -> None:
    with check(report, "rest: ping") as result:
        setup = _rest_setup(cluster, result)
        if setup is None:
            return
        version, token = setup
        answer = _request(cluster, f"/slurm/{version}/ping", token)
        pings = (answer.body or {}).get("pings") or []
        if answer.status == 200 and pings:
            result.ok(f"{version}/ping as {USER} with a token from scontrol token: {len(pings)} controller(s)")
        else:
            result.fail(f"{version}/ping failed", _errors(answer))
            return
    job = _check_rest_job(cluster, report, version, token=token)
    _check_rest_accounting(cluster, report, version, token=token, job=job)
    _check_rest_refusals(cluster, report, version)


def _rest_setup(cluster: Cluster, result: CheckRecorder) -> tuple[str, str] | None:
    """The API version to speak and a token for the user."""
    _, listing = cluster.slurm(
        CONTROLLER, "sbin/slurmrestd", "-d", "list", user="slurmrestd", environment=REST_SECURITY
    )
    version = newest_data_parser(listing)
    if version is None:
        result.fail("slurmrestd -d list names no data_parser plugin", listing.splitlines()[-5:])
        return None
    code, output = cluster.slurm(CONTROLLER, "bin/scontrol", "token", f"username={USER}", "lifespan=900")
    token = next((line.split("=", 1)[1] for line in output.splitlines() if line.startswith("SLURM_JWT=")), None)
    if code != 0 or not token:
        result.fail(f"scontrol token username={USER} failed (exit {code})", output.splitlines()[-5:])
        return None
    return version, token


def _check_rest_job(cluster: Cluster, report: VerificationReport, version: str, *, token: str) -> str | None:
    with check(report, "rest: job") as result:
        job = {
            "name": "slurm-factory-rest",
            "account": ACCOUNT,
            "current_working_directory": "/tmp",
            "environment": ["PATH=/usr/bin:/bin"],
            "script": "#!/bin/sh\nhostname\n",
        }
        answer = _request(cluster, f"/slurm/{version}/job/submit", token, method="POST", body={"job": job})
        submitted = (answer.body or {}).get("job_id")
        if answer.status != 200 or not submitted:
            result.fail(f"{version}/job/submit failed", _errors(answer))
            return None
        done, state = cluster.wait_for(lambda: _rest_job_state(cluster, version, token, job=submitted), 60)
        if done:
            result.ok(f"job {submitted} submitted through {version}/job/submit; slurmctld reports it {state}")
        else:
            result.fail(f"job {submitted} from the REST API did not complete: {state}")
    return None if result.failed else str(submitted)


def _rest_job_state(cluster: Cluster, version: str, token: str, *, job: object) -> tuple[bool, str]:
    answer = _request(cluster, f"/slurm/{version}/job/{job}", token)
    jobs = (answer.body or {}).get("jobs") or []
    states = _states(jobs[0].get("job_state")) if jobs else []
    return "COMPLETED" in states, ",".join(states) or f"HTTP {answer.status}"


def _check_rest_accounting(
    cluster: Cluster, report: VerificationReport, version: str, *, token: str, job: str | None
) -> None:
    with check(report, "rest: accounting") as result:
        if job is None:
            result.fail("no REST job completed to look up (see rest: job)")
            return
        found, detail = cluster.wait_for(lambda: _slurmdb_record(cluster, version, token, job=job), 30)
        if found:
            result.ok(f"{version} slurmdb/job/{job}: {detail}")
        else:
            result.fail(f"slurmdbd's endpoint does not show job {job} completed in account {ACCOUNT}: {detail}")


def _slurmdb_record(cluster: Cluster, version: str, token: str, *, job: str) -> tuple[bool, str]:
    answer = _request(cluster, f"/slurmdb/{version}/job/{job}", token)
    jobs = (answer.body or {}).get("jobs") or []
    if not jobs:
        return False, f"HTTP {answer.status}, no job"
    record = jobs[0]
    states = _states((record.get("state") or {}).get("current"))
    account = record.get("account")
    return "COMPLETED" in states and account == ACCOUNT, f"state {','.join(states)}, account {account}"


def _check_rest_refusals(cluster: Cluster, report: VerificationReport, version: str) -> None:
    """slurmrestd itself refuses a request without a token; a token signed with another key passes slurmrestd (it
    only forwards it) and is refused by slurmctld, which checks every request's signature."""
    with check(report, "rest: refused without a valid token") as result:
        anonymous = _request(cluster, f"/slurm/{version}/diag", None)
        forged = _request(cluster, f"/slurm/{version}/diag", forged_token(USER))
        forged_errors = " ".join(_errors(forged)).lower()
        if anonymous.status != UNAUTHORIZED:
            result.fail(f"a request without a token got HTTP {anonymous.status}, not {UNAUTHORIZED}")
        elif forged.status == OK or "authentication" not in forged_errors:
            result.fail(f"a token signed with another key got HTTP {forged.status}", _errors(forged))
        else:
            result.ok(f"no token: HTTP {UNAUTHORIZED}; a token signed with another key: HTTP {forged.status}, "
                      f"{_errors(forged)[1] if len(_errors(forged)) > 1 else 'refused'}")  # fmt: skip
