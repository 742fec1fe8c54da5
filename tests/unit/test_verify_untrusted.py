"""`slurm-factory verify` on bad paths, malformed manifests and unsafe tarballs, and without a Docker engine: one
clear line and the right exit code, never a crash; a tarball that fails writes its report. The table is data: add a
row for every new bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from slurm_factory import cli
from slurm_factory.exceptions import EXIT_FAILURE, EXIT_USAGE
from slurm_factory.verify import DOCKER_STAGES, MANIFEST_CHECK, MEMBERS_CHECK, SBOM_CHECK, STATIC_CHECKS
from tests.unit.tarballs import (
    ARTIFACT_NAME,
    ROOT,
    Member,
    hardened_members,
    manifest,
    plugin_members,
    shared_object,
    write_artifact,
)

NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/slurm-factory-test/docker.sock", "DOCKER_CONTEXT": ""}


def _with_manifest(document: dict[str, Any] | bytes) -> Callable[[Path], Path]:
    return lambda tmp: write_artifact(tmp, plugin_members(), document)


def _with_members(*members: Member) -> Callable[[Path], Path]:
    return lambda tmp: write_artifact(tmp, [*plugin_members(), *members])


def _file(content: bytes) -> Callable[[Path], Path]:
    def write(tmp: Path) -> Path:
        (tmp / ARTIFACT_NAME).write_bytes(content)
        return tmp / ARTIFACT_NAME

    return write


@dataclass(frozen=True)
class BadInput:
    name: str
    make: Callable[[Path], Path | str]
    exit_code: int
    first_line: str
    report: bool  # a verify.json is written beside the tarball


REPORTED = "slurm-24.11-trixie-software.tar.gz failed verification: "
BAD_INPUTS = [
    BadInput("missing-file", lambda tmp: tmp / "none.tar.gz", EXIT_USAGE, "none.tar.gz: no such file", report=False),
    BadInput("dot", lambda tmp: ".", EXIT_USAGE, ". is not a slurm-factory artifact: it is a directory", report=False),
    BadInput(
        "slash", lambda tmp: "/", EXIT_USAGE, "/ is not a slurm-factory artifact: it is a directory", report=False
    ),
    BadInput(
        "directory", lambda tmp: tmp, EXIT_USAGE, "is not a slurm-factory artifact: it is a directory", report=False
    ),
    BadInput("not-gzip", _file(b"plain text"), EXIT_USAGE, "not a readable gzip-compressed tarball", report=False),
    BadInput("empty-file", _file(b""), EXIT_USAGE, "not a readable gzip-compressed tarball", report=False),
    BadInput(
        "tool-null",
        _with_manifest(manifest(tool=None)),
        EXIT_FAILURE,
        REPORTED + "manifest — manifest.json: 'tool' must be an object, not null",
        report=True,
    ),
    BadInput(
        "toolchain-string",
        _with_manifest(manifest(toolchain="trixie")),
        EXIT_FAILURE,
        REPORTED + "manifest — manifest.json: 'toolchain' must be an object, not a string",
        report=True,
    ),
    BadInput(
        "no-build-prefix",
        _with_manifest({k: v for k, v in manifest().items() if k != "build_prefix"}),
        EXIT_FAILURE,
        REPORTED + "manifest — manifest.json: 'build_prefix' is missing",
        report=True,
    ),
    BadInput(
        "manifest-not-json",
        _with_manifest(b"{not json"),
        EXIT_FAILURE,
        REPORTED + "manifest — manifest.json is not JSON",
        report=True,
    ),
    BadInput(
        "manifest-a-list",
        _with_manifest(b"[1, 2]"),
        EXIT_FAILURE,
        REPORTED + "manifest — manifest.json must be a JSON object, not a list",
        report=True,
    ),
    BadInput(
        "version-a-number",
        _with_manifest(manifest(slurm={"version": 24.11, "series": "24.11"})),
        EXIT_FAILURE,
        REPORTED + "manifest — manifest.json: 'slurm.version' must be a string, not float",
        report=True,
    ),
    BadInput(
        "version-of-another-series",
        _with_manifest(manifest(slurm={"version": "25.11.7", "series": "24.11"})),
        EXIT_FAILURE,
        REPORTED + "manifest — manifest.json: 'slurm.version' '25.11.7' is not of 'slurm.series' '24.11'",
        report=True,
    ),
    BadInput(
        "version-in-other-digits",
        _with_manifest(manifest(slurm={"version": "\u0662\u0664.11.5", "series": "24.11"})),
        EXIT_FAILURE,
        REPORTED + "manifest — manifest.json: 'slurm.version' is not a Slurm release like 24.11.5",
        report=True,
    ),
    BadInput(
        "gpu-a-string",
        _with_manifest(manifest(gpu="yes")),
        EXIT_FAILURE,
        REPORTED + "manifest — manifest.json: 'gpu' must be true or false, not a string",
        report=True,
    ),
    BadInput(
        "not-by-slurm-factory",
        _with_manifest(manifest(tool={"name": "other"})),
        EXIT_FAILURE,
        REPORTED + "manifest — manifest.json: 'tool.name' is not slurm-factory",
        report=True,
    ),
    BadInput(
        "unknown-toolchain",
        _with_manifest(manifest(toolchain={"name": "plan9", "base_image": "x"})),
        EXIT_FAILURE,
        REPORTED + "manifest — manifest.json: 'toolchain.name' is an unknown toolchain",
        report=True,
    ),
    BadInput(
        "package-injection",
        _with_manifest(manifest(runtime_packages=["munge && curl x | sh"])),
        EXIT_FAILURE,
        REPORTED + "manifest — manifest.json: 'runtime_packages[0]' is not a package name",
        report=True,
    ),
    BadInput(
        "image-injection",
        _with_manifest(manifest(toolchain={"name": "trixie", "base_image": "debian:trixie\nRUN curl x"})),
        EXIT_FAILURE,
        REPORTED + "manifest — manifest.json: 'toolchain.base_image' is not an image",
        report=True,
    ),
    BadInput(
        "absolute-member",
        _with_members(Member(f"/{ROOT}/bin/x", b"x")),
        EXIT_FAILURE,
        REPORTED + f"static: members — 1 unsafe member: /{ROOT}/bin/x: absolute path",
        report=True,
    ),
    BadInput(
        "hard-link",
        _with_members(Member(f"{ROOT}/x", kind=b"1", link="/etc/shadow")),
        EXIT_FAILURE,
        REPORTED + f"static: members — 1 unsafe member: {ROOT}/x: hard link to /etc/shadow",
        report=True,
    ),
]


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli.app, list(args), env=NO_DOCKER)


def _error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[bad.name for bad in BAD_INPUTS])
def test_bad_input_to_verify_is_one_clear_line_with_the_right_exit_code(tmp_path: Path, bad: BadInput) -> None:
    target = bad.make(tmp_path)
    result = _invoke("verify", str(target))

    assert result.exit_code == bad.exit_code, result.output
    errors = _error_lines(result)
    assert len(errors) == 1, result.stderr
    assert bad.first_line in errors[0]
    assert "unexpected" not in result.stderr and "Traceback" not in result.output
    reports = list(tmp_path.glob("*.verify.json"))
    assert bool(reports) is bad.report
    if bad.report:
        report = json.loads(reports[0].read_text())
        assert report["passed"] is False
        assert any(entry["not_run"] for entry in report["checks"]), "nothing runs after an unsafe or bad tarball"


def test_a_bad_signature_keeps_the_host_checks_and_runs_nothing_of_the_artifact_in_a_container(
    tmp_path: Path,
) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    artifact = write_artifact(
        artifacts,
        [
            *plugin_members(),
            *hardened_members(tmp_path),
            Member(f"{ROOT}/lib/libx.so", shared_object(tmp_path, "$ORIGIN")),
        ],
    )
    key = tmp_path / "key.pub.asc"
    key.write_text("not a key\n")
    (artifacts / f"{ARTIFACT_NAME}.asc").write_text("not a signature\n")

    result = _invoke("verify", str(artifact), "--public-key", str(key))

    assert result.exit_code == EXIT_FAILURE
    errors = _error_lines(result)
    assert len(errors) == 1, result.stderr
    assert "failed verification: signature" in errors[0]
    report = json.loads((artifacts / f"{ARTIFACT_NAME}.verify.json").read_text())
    checks = {entry["name"]: entry for entry in report["checks"]}
    assert checks["signature"]["passed"] is False and checks["signature"]["not_run"] is False
    for name in (MEMBERS_CHECK, MANIFEST_CHECK, *STATIC_CHECKS):
        assert checks[name]["passed"] is True, checks[name]
    for name in DOCKER_STAGES:
        assert checks[name]["not_run"] is True
        assert checks[name]["summary"] == "not run: the artifact is not authentic (see signature)"
    sidecar = json.loads((artifacts / f"{ARTIFACT_NAME}.manifest.json").read_text())
    assert sidecar["verified"]["passed"] is False


def test_without_docker_a_statically_clean_artifact_is_not_verified_in_one_line(tmp_path: Path) -> None:
    artifact = write_artifact(
        tmp_path,
        [
            *plugin_members(),
            *hardened_members(tmp_path),
            Member(f"{ROOT}/lib/libx.so", shared_object(tmp_path, "$ORIGIN")),
        ],
    )

    result = _invoke("verify", str(artifact))

    assert result.exit_code == EXIT_FAILURE
    errors = _error_lines(result)
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(
        f"error: {ARTIFACT_NAME} is not verified: images, relocated, cluster not run: cannot reach the Docker engine"
    )
    assert (tmp_path / f"{ARTIFACT_NAME}.verify.json").is_file()


def test_a_symlink_planted_where_the_report_and_sidecar_go_is_replaced_not_followed(tmp_path: Path) -> None:
    artifact = write_artifact(tmp_path, [Member(f"{ROOT}/bin/x", b"x", mode=0o4755)])
    victim = tmp_path / "victim.json"
    victim.write_text('{"secret": "kept"}\n')
    for suffix in (".verify.json", ".manifest.json"):
        (tmp_path / f"{ARTIFACT_NAME}{suffix}").symlink_to(victim)

    result = _invoke("verify", str(artifact))

    assert result.exit_code == EXIT_FAILURE
    assert victim.read_text() == '{"secret": "kept"}\n'
    for suffix in (".verify.json", ".manifest.json"):
        written = tmp_path / f"{ARTIFACT_NAME}{suffix}"
        assert not written.is_symlink()
        assert "secret" not in written.read_text()


def test_an_unsafe_tarball_points_the_checks_not_run_at_the_member_scan(tmp_path: Path) -> None:
    artifact = write_artifact(tmp_path, [Member(f"{ROOT}/bin/x", b"x", mode=0o4755)])

    _invoke("verify", str(artifact))

    report = json.loads((tmp_path / f"{ARTIFACT_NAME}.verify.json").read_text())
    summaries = {entry["name"]: entry["summary"] for entry in report["checks"] if entry["not_run"]}
    assert summaries == {
        MANIFEST_CHECK: f"not run: the tarball is unsafe (see {MEMBERS_CHECK})",
        **{name: f"not run: see {MEMBERS_CHECK}" for name in (*STATIC_CHECKS, SBOM_CHECK, *DOCKER_STAGES)},
    }


def test_an_unwritable_artifact_directory_is_one_line(tmp_path: Path) -> None:
    artifact = write_artifact(tmp_path, [Member(f"{ROOT}/bin/x", b"x", mode=0o4755)])
    (tmp_path / f"{ARTIFACT_NAME}.verify.json").mkdir()  # the report's place is taken by a directory

    result = _invoke("verify", str(artifact))

    assert result.exit_code == EXIT_USAGE
    [error] = _error_lines(result)
    assert f"cannot write the verification report beside {ARTIFACT_NAME}.verify.json" in error
