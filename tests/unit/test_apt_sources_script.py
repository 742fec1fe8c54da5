"""The script a cross image runs when the target arch's packages are in another archive (Ubuntu's ports): run on
this host's files, and its output read by this host's real apt (`apt-get indextargets` with the files as its
sources), so each source is proven kept to its arch as apt itself understands the result."""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from slurm_factory.plan.templating import render

DATA = Path(__file__).parent / "data" / "apt-sources"
SCRIPT = "dockerfile/keep-apt-sources-to-arch.sh"
pytestmark = pytest.mark.skipif(
    not (shutil.which("apt-get") and shutil.which("dpkg") and shutil.which("awk")),
    reason="needs a Debian host's apt-get, dpkg and awk",
)


@pytest.fixture
def host_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()


def _layout(tmp_path: Path) -> tuple[Path, Path, Path]:
    """This image's /etc/apt and /usr/share/keyrings, and the arm64 image's as the Dockerfile copies them."""
    apt, keyrings, foreign = tmp_path / "etc-apt", tmp_path / "keyrings", tmp_path / "foreign"
    (apt / "sources.list.d").mkdir(parents=True)
    shutil.copy(DATA / "sources.list", apt / "sources.list")
    shutil.copy(DATA / "site.sources", apt / "sources.list.d" / "site.sources")
    (foreign / "etc-apt" / "sources.list.d").mkdir(parents=True)
    shutil.copy(DATA / "ports.sources", foreign / "etc-apt" / "sources.list.d" / "ubuntu.sources")
    keyrings.mkdir()
    (keyrings / "ubuntu-archive-keyring.gpg").write_text("this image's key")
    (foreign / "keyrings").mkdir()
    (foreign / "keyrings" / "ubuntu-archive-keyring.gpg").write_text("the arm64 image's key")
    (foreign / "keyrings" / "site-ports.gpg").write_text("a site mirror's key")
    (foreign / "etc-apt" / "auth.conf.d").mkdir()
    (foreign / "etc-apt" / "auth.conf.d" / "ports.conf").write_text("machine ports.example login x password y\n")
    return apt, keyrings, foreign


def _run_script(tmp_path: Path, apt: Path, keyrings: Path, foreign: Path) -> None:
    script = tmp_path / "keep-apt-sources-to-arch.sh"
    script.write_text(render(SCRIPT), encoding="utf-8")
    subprocess.run(["sh", str(script), "arm64", str(foreign), str(apt), str(keyrings)], check=True, timeout=60)


def _targets_by_arch(apt: Path, host_arch: str) -> dict[str, set[str]]:
    """Which source file apt reads each arch's package indices from."""
    listed = subprocess.run(
        ["apt-get", "indextargets", "--no-release-info", "--format", "$(ARCHITECTURE) $(SOURCESENTRY)",
         "-o", f"Dir::Etc::sourcelist={apt / 'sources.list'}", "-o", f"Dir::Etc::sourceparts={apt / 'sources.list.d'}",
         "-o", f"APT::Architectures::={host_arch}", "-o", "APT::Architectures::=arm64",
         "-o", "APT::Architectures::=i386"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    files: dict[str, set[str]] = defaultdict(set)
    for line in listed.splitlines():
        arch, _, entry = line.partition(" ")
        files[arch].add(Path(entry.rsplit(":", 1)[0]).name)
    return files


def test_each_source_is_kept_to_its_arch_as_apt_reads_it(tmp_path: Path, host_arch: str) -> None:
    apt, keyrings, foreign = _layout(tmp_path)
    _run_script(tmp_path, apt, keyrings, foreign)
    files = _targets_by_arch(apt, host_arch)
    assert files["arm64"] == {"arm64-ubuntu.sources"}, files
    assert files[host_arch] == {"sources.list", "site.sources"}, files
    assert "i386" not in files, "a site's own arch option is replaced, not kept beside ours"


def test_comments_keys_and_multi_line_fields_survive(tmp_path: Path) -> None:
    apt, keyrings, foreign = _layout(tmp_path)
    _run_script(tmp_path, apt, keyrings, foreign)
    one_line = (apt / "sources.list").read_text().splitlines()
    assert one_line[0] == "# deb http://commented.example/debian trixie main"
    assert "signed-by=/usr/share/keyrings/site.gpg] http://site.example/debian trixie contrib" in one_line[2]
    site = (apt / "sources.list.d" / "site.sources").read_text()
    assert " mQINBF\n -----END PGP PUBLIC KEY BLOCK-----\n" in site
    assert site.count("Architectures:") == 2 and " i386" not in site
    ports = (apt / "sources.list.d" / "arm64-ubuntu.sources").read_text()
    assert ports.startswith("# Ubuntu's ports archive") and ports.endswith("Architectures: arm64\n")
    # The keys and credentials the added source may need are added; none of this image's is replaced.
    assert (keyrings / "ubuntu-archive-keyring.gpg").read_text() == "this image's key"
    assert (keyrings / "site-ports.gpg").read_text() == "a site mirror's key"
    assert (apt / "auth.conf.d" / "ports.conf").is_file()
