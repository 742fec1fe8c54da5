"""A signed apt repository in a file:// mirror: `<mirror>/apt/` with `pool/<codename>/main/`, `dists/<codename>/`
(Packages, Release, InRelease, Release.gpg, by-hash) and the public key that signs it.

The tool is apt-ftparchive, APT's own indexer (maintained with apt, in every apt toolchain image as apt-utils): it
indexes the whole pool, so adding a release keeps the earlier ones installable, and it keeps no database that two
publishers could corrupt. It runs in the packaging image with the repository mounted; Release is signed on this
host, so the signing key never enters a container. Publishers of one mirror take the directory's lock (flock, also
across NFS) for the whole copy-index-sign, as the tarball index does.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from slurm_factory.docker_engine import DockerSession
from slurm_factory.exceptions import BuildError, ConfigurationError
from slurm_factory.packages.store import PackageSet, is_package_file_name
from slurm_factory.plan.model import Mount, PackagePlan, PlanFile
from slurm_factory.plan.templating import render
from slurm_factory.progress import BuildMonitor
from slurm_factory.signing import SigningKey, public_key_fingerprints

APT_DIR = "apt"
INDEX_SCRIPT = "index-apt.sh"
ORIGIN = "slurm-factory"
CONTAINER_REPOSITORY = PurePosixPath("/srv/slurm-factory-apt")
CONTAINER_SCRIPT = PurePosixPath("/opt/slurm-factory/plan") / INDEX_SCRIPT
PUBLIC_KEY_FILE = "slurm-factory-archive-keyring.asc"


@dataclass(frozen=True)
class AptPublication:
    repository: Path
    codename: str
    public_key: Path
    added: tuple[str, ...]

    @property
    def source_line(self) -> str:
        """The deb822-free one-line source a host adds (with the key installed where `signed-by` names it)."""
        return (
            f"deb [signed-by=/etc/apt/keyrings/{PUBLIC_KEY_FILE}] {self.repository.resolve().as_uri()} "
            f"{self.codename} main"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "apt",
            "repository": str(self.repository),
            "codename": self.codename,
            "public_key": str(self.public_key),
            "added": list(self.added),
            "source": self.source_line,
        }


def repository_directory(mirror_directory: Path) -> Path:
    return mirror_directory / APT_DIR


def pool_directory(repository: Path, codename: str) -> Path:
    return repository / "pool" / codename / "main"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def add_to_pool(package_set: PackageSet, pool: Path) -> list[str]:
    """Copy the set's .deb files into the pool. A file of the same name with other bytes is refused: one version
    names one build, and a client that cached the old bytes would fail its hash check."""
    unsafe = [entry.file for entry in package_set.files if not is_package_file_name(entry.file)]
    if unsafe:
        raise ConfigurationError(f"the package set {package_set.directory} names {unsafe[0]!r}, not a .deb file name")
    # Every file is checked before the first is copied: a refused set leaves nothing of itself in the pool.
    present = {entry.file for entry in package_set.files if (pool / entry.file).is_file()}
    for entry in package_set.files:
        if entry.file in present and _sha256(pool / entry.file) != entry.sha256:
            raise ConfigurationError(
                f"the repository already has {entry.file} with other contents",
                hint="a rebuild of the same Slurm with other inputs needs another version: bump --package-release "
                "(a --gpu set and one without are two builds of one version: publish them into two mirrors)",
            )
    pool.mkdir(parents=True, exist_ok=True)
    added = []
    for entry in package_set.files:
        if entry.file in present:
            continue
        target = pool / entry.file
        partial = target.with_name(f".{target.name}.partial")
        shutil.copyfile(package_set.directory / entry.file, partial)
        os.replace(partial, target)
        added.append(entry.file)
    return added


def render_index_script(plan: PackagePlan) -> PlanFile:
    return PlanFile(
        render(
            f"packages/{INDEX_SCRIPT}.j2",
            repository=CONTAINER_REPOSITORY,
            codename=plan.request.toolchain.codename,
            arch=plan.request.arch.value,
            origin=ORIGIN,
            source_date_epoch=plan.request.slurm.source_date_epoch,
        ),
        mode=0o755,
    )


def _index(plan: PackagePlan, repository: Path, session: DockerSession, monitor: BuildMonitor) -> None:
    with session.container(
        plan.image.reference,
        ("bash", str(CONTAINER_SCRIPT)),
        role="apt-index",
        mounts=(Mount(repository, CONTAINER_REPOSITORY),),
    ) as container:
        container.put_files({CONTAINER_SCRIPT: render_index_script(plan)})
        container.start()
        exit_code = container.stream_output(monitor.output)
    if exit_code != 0:
        raise BuildError(f"indexing the apt repository {repository} failed (exit code {exit_code})")


# What the index script leaves for the host to sign, and what signing puts in place.
UNSIGNED_RELEASE = "Release.new"
SIGNED_FILES = ("Release", "Release.gpg", "InRelease")


def sign_release(dist: Path, signer: SigningKey) -> None:
    """Sign the indexed Release.new: InRelease (clear-signed, what apt reads first) and Release.gpg (detached, for
    older clients), each written beside its name, then renamed over the signed files. Until the renames the
    repository stays as it was, signed; a failed signing leaves it so and removes what it wrote."""
    unsigned = dist / UNSIGNED_RELEASE
    staged = {name: dist / f".{name}.new" for name in SIGNED_FILES}
    try:
        shutil.copyfile(unsigned, staged["Release"])
        signer.sign_detached(staged["Release"], staged["Release.gpg"])
        signer.sign_inline(staged["Release"], staged["InRelease"])
    except BaseException:
        for path in staged.values():
            path.unlink(missing_ok=True)
        raise
    # Release and its detached signature first (a pair), InRelease, which holds both in one, last.
    for name in SIGNED_FILES:
        os.replace(staged[name], dist / name)
    unsigned.unlink()


def check_repository_key(repository: Path, signer: SigningKey) -> None:
    """A repository keeps the key that first signed it: nodes trust only that key (`signed-by`), and a silently
    replaced one would stop every `apt-get update` there."""
    published = repository / PUBLIC_KEY_FILE
    if not published.is_file():
        return
    fingerprints = public_key_fingerprints(published)
    if signer.fingerprint in fingerprints:
        return
    shown = ", ".join(sorted(fingerprint[-16:] for fingerprint in fingerprints)) or "no readable key"
    raise ConfigurationError(
        f"the apt repository {repository} is signed by {shown}, not by --signing-key {signer.fingerprint[-16:]}; "
        "its nodes trust only the key it was published with",
        hint=f"sign with that key, publish into another --publish-url, or rotate deliberately: replace "
        f"{published.name} there and on every node first",
    )


def publish_packages(
    plan: PackagePlan,
    package_set: PackageSet,
    *,
    mirror_directory: Path,
    signer: SigningKey,
    public_key: Path,
    session: DockerSession,
    monitor: BuildMonitor,
) -> AptPublication:
    """Add the set to the mirror's apt repository, index it and sign it, under the directory's lock."""
    repository = repository_directory(mirror_directory)
    codename = plan.request.toolchain.codename
    with _directory_lock(repository):
        check_repository_key(repository, signer)
        added = add_to_pool(package_set, pool_directory(repository, codename))
        _index(plan, repository, session, monitor)
        sign_release(repository / "dists" / codename, signer)
        key = repository / PUBLIC_KEY_FILE
        shutil.copyfile(public_key, key)
    monitor.note(f"apt repository {repository}: {len(added)} package(s) added for {codename}")
    return AptPublication(repository, codename, key, tuple(added))
