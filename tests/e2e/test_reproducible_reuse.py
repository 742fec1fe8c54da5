"""Reproducible, content-addressed artifacts, for real: the same request built twice from cold gives the same bytes;
asked again it is answered from the store in seconds with no container; a request of another identity with the same
artifact name never replaces it; the SBOM beside it is consistent and signed."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from tests.e2e.conftest import StoreBuilds
from tests.e2e.helpers import ARTIFACT, run_cli
from tests.e2e.shared_builds import Builds
from tests.tardiff import first_difference


def test_two_cold_builds_of_one_request_are_bit_identical(builds: Builds) -> None:
    """The second build ran with --no-cache: a fresh toolchain image, no ccache, fresh containers."""
    difference = first_difference(builds.first_tarball, builds.warm.artifact)

    assert difference is None, f"the --no-cache rebuild differs from the cold build: {difference}"
    assert builds.warm.result["sha256"] == builds.cold.result["sha256"]


def test_the_same_request_again_is_reused_with_its_verification_and_signature(
    store_builds: StoreBuilds, builds: Builds
) -> None:
    reused = store_builds.reused

    assert reused.result["reused"] is True
    assert reused.result["sha256"] == store_builds.first_sha256
    assert reused.seconds < 10, f"reuse took {reused.seconds:.1f}s"
    # It was verified and signed by the rebuild: nothing ran again, the report and signature are the same files.
    assert "verify" not in reused.result["durations"]
    assert reused.result["verification"]["passed"] is True
    assert Path(reused.result["signature"]).resolve() == builds.warm.artifact.with_name(ARTIFACT + ".asc")
    assert reused.result["stored"] == builds.warm.result["stored"]


def test_reuse_runs_no_build_stage(store_builds: StoreBuilds) -> None:
    durations = store_builds.reused.result["durations"]

    assert "reuse" in durations
    assert not {"image", "compile", "install", "artifact"} & set(durations)


def test_another_identity_never_replaces_the_stored_artifact(store_builds: StoreBuilds, builds: Builds) -> None:
    other, first = store_builds.other, builds.warm

    assert other.result["reused"] is False
    assert other.result["build_id"] != first.result["build_id"]
    assert other.artifact != first.artifact
    assert first.artifact.is_file() and first.artifact.with_name(ARTIFACT + ".asc").is_file()
    assert first_difference(builds.first_tarball, first.artifact) is None


def test_another_identity_rebuilds_with_a_warm_compiler_cache(store_builds: StoreBuilds) -> None:
    hits = re.findall(r"^\s*Hits:\s+(\d+)", store_builds.other.log_text, flags=re.MULTILINE)
    assert hits and int(hits[0]) > 500, "the build of another identity did not reuse the compiler cache"


def test_the_name_points_at_the_newest_of_the_request(store_builds: StoreBuilds) -> None:
    back = store_builds.back

    assert back.result["reused"] is True
    link = back.link
    assert link.is_symlink() and not os.readlink(link).startswith("/")
    assert link.resolve() == back.artifact.resolve()
    assert link.with_name(ARTIFACT + ".asc").resolve() == back.artifact.with_name(ARTIFACT + ".asc")


def test_list_shows_both_identities_verified_and_signed(store_builds: StoreBuilds, builds: Builds) -> None:
    back = store_builds.back
    done = run_cli(back.home, back.project, "list", "--json")
    assert done.returncode == 0, done.stderr
    artifacts = {entry["build_id"]: entry for entry in json.loads(done.stdout)["artifacts"]}

    first = artifacts[builds.warm.result["build_id"]]
    other = artifacts[store_builds.other.result["build_id"]]
    assert (first["slurm_version"], first["engine"], first["verified"], first["signed"]) == (
        "24.11.5",
        "native",
        True,
        True,
    )
    assert (other["verified"], other["signed"]) == (False, False)
    assert first["current"] and not other["current"]
    assert "base-image=" in other["options"]


def test_sbom_is_beside_the_artifact_signed_and_published(builds: Builds) -> None:
    warm = builds.warm
    sbom = warm.artifact.with_name(ARTIFACT + ".sbom.json")
    document = json.loads(sbom.read_text())

    assert document["metadata"]["component"]["hashes"][0]["content"] == warm.result["sha256"]
    manifest = warm.result["manifest"]
    linked = {dependency["name"] for dependency in manifest["dependencies"]}
    runtime = set(manifest["runtime_packages"])
    listed = {c["name"] for c in document["components"] if c.get("purl", "").startswith("pkg:deb/debian/")}
    # What the binaries link, and the runtime packages nothing links (munge's daemon, PMIx's, perl for seff).
    assert linked and runtime - linked and listed == linked | runtime
    assert {"sbom"} <= {check["name"] for check in warm.result["verification"]["checks"]}
    signature = sbom.with_name(sbom.name + ".asc")
    home = Path(warm.home) / "gpg-check"
    home.mkdir(mode=0o700, exist_ok=True)
    subprocess.run(
        ["gpg", "--homedir", str(home), "--import", warm.result["public_key"]], check=True, capture_output=True
    )
    checked = subprocess.run(
        ["gpg", "--homedir", str(home), "--verify", str(signature), str(sbom)], capture_output=True, check=False
    )
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)
    assert checked.returncode == 0, checked.stderr
    published = [Path(path).name for path in builds.cold.result["publication"]["files"]]
    assert ARTIFACT + ".sbom.json" in published and ARTIFACT + ".sbom.json.asc" in published
