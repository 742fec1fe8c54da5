"""The `sbom` check: the SBOM beside an artifact describes exactly this tarball and what its manifest records."""

from __future__ import annotations

from slurm_factory.sbom import sbom_path, sbom_problems
from slurm_factory.verify.artifact_reader import ArtifactUnderTest
from slurm_factory.verify.report import CheckRecorder


def check_sbom(artifact: ArtifactUnderTest, result: CheckRecorder) -> None:
    path = sbom_path(artifact.path)
    if not path.exists():
        result.ok(f"no {path.name} beside the artifact: nothing to compare")
        return
    problems = sbom_problems(artifact.path, artifact.sha256, artifact.manifest)
    if problems:
        result.fail(f"{path.name} does not match the tarball", problems)
        return
    packages = len(artifact.manifest.get("dependencies") or []) + len(artifact.manifest.get("spack_packages") or [])
    result.ok(f"{path.name}: this tarball's sha256, Slurm {artifact.manifest['slurm']['version']}, {packages} packages")
