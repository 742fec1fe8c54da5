"""Real Docker and apt: a cross build's toolchain image that takes the target arch's apt sources from another image
(how Ubuntu's ports archive is reached) builds, installs the arm64 package from the copied sources, and keeps each
source to its own arch. Shown with Debian images: the base image's own sources for amd64 (one-line when made by
debootstrap), a deb822 copy for arm64 (the same mirror, which carries both arches), and one -dev package so that it
takes about a minute. The script's edge cases are unit-tested (tests/unit/test_apt_sources_script.py)."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from slurm_factory.builder import _ensure_toolchain_image
from slurm_factory.catalog.toolchains import Toolchain, load_toolchains
from slurm_factory.choices import Arch
from slurm_factory.config import Settings
from slurm_factory.docker_engine import DockerSession
from slurm_factory.plan import make_plan
from slurm_factory.progress import BuildMonitor, SilentDisplay
from slurm_factory.request import make_request

pytestmark = pytest.mark.docker
DATA = Path(__file__).parent / "data"


def _taking_sources_from(toolchain: Toolchain, sources_image: str) -> Toolchain:
    """trixie, whose arm64 packages (one -dev package, no cross compiler) come from `sources_image`'s apt sources."""
    arm64 = toolchain.arches["arm64"].model_copy(update={"foreign_apt_sources": True, "base_image": sources_image})
    packages = toolchain.packages.model_copy(update={"toolchain_packages": (), "cross_packages": {"arm64": ()}})
    native = toolchain.native.model_copy(update={"build_packages": ("libmunge-dev",)})
    return toolchain.model_copy(
        update={"arches": {**toolchain.arches, "arm64": arm64}, "packages": packages, "native": native}
    )


def test_a_cross_image_installs_from_the_copied_sources_each_kept_to_its_arch(
    project_cleanup: str, docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    session = DockerSession(project_cleanup)
    lines: list[str] = []
    sources_image = f"{project_cleanup}/deb822-sources:test"
    dockerfile = (DATA / "deb822-sources.Dockerfile").read_text(encoding="utf-8")
    session.build_image(dockerfile, sources_image, session.labels("test"), lines.append)
    trixie = _taking_sources_from(load_toolchains()["trixie"], sources_image)
    monkeypatch.setattr("slurm_factory.request.get_toolchain", lambda name: trixie)
    monkeypatch.setattr("slurm_factory.request.host_arch", lambda: Arch.AMD64)
    request = make_request(slurm_version="24.11.5", toolchain="trixie", engine="native", arch="arm64")
    assert request.cross
    plan = make_plan(request, Settings(project_name=project_cleanup, home=tmp_path))
    assert "FROM " + sources_image + " AS foreign-apt-sources" in plan.image.dockerfile
    with BuildMonitor(tmp_path / "image.log", SilentDisplay()) as monitor:
        _ensure_toolchain_image(plan, session, monitor, home=tmp_path)
    reference = plan.image.reference

    with session.container(reference, ["sleep", "infinity"], role="probe") as box:
        box.start()
        code, installed = box.run(["dpkg-query", "-W", "-f", "${Package}:${Architecture}", "libmunge-dev:arm64"])
        assert (code, installed.strip()) == (0, "libmunge-dev:arm64")
        code, targets = box.run(
            ["apt-get", "indextargets", "--no-release-info", "--format", "$(ARCHITECTURE) $(SOURCESENTRY)"]
        )
        assert code == 0, targets
    files: dict[str, set[str]] = {"amd64": set(), "arm64": set()}
    for arch, _, entry in (line.partition(" ") for line in targets.splitlines()):
        if arch in files:
            files[arch].add(entry.rsplit(":", 1)[0])
    assert files["arm64"] == {"/etc/apt/sources.list.d/arm64-debian.sources"}, files
    assert files["amd64"] and not any("/arm64-" in name for name in files["amd64"]), files
