"""Remove Spack install trees kept between builds beyond the most recently used few (run by Spack's Python in the
build container, as the user that owns what the containers wrote).

Usage: prune_install_trees.py DIRECTORY OWN_KEY KEEP

DIRECTORY holds `<key>/` trees and their `<key>.lock` files. A build holds a flock on its lock file while it runs,
and sets the lock's mtime when it starts: the trees are ordered by that time. The tree of OWN_KEY and the
KEEP - 1 most recently used others stay; each other one is removed only under an exclusive lock taken without
waiting (a tree another build is using is skipped), and its lock file with it, so a build that waited on it opens
the lock again (slurm_factory.spack_install_trees.tree_lock).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import sys
from pathlib import Path

KEY = re.compile(r"^[0-9a-f]{32}$")
LOCK_SUFFIX = ".lock"


def last_used(directory: Path, key: str) -> float:
    try:
        return (directory / f"{key}{LOCK_SUFFIX}").stat().st_mtime
    except FileNotFoundError:
        return 0.0


def kept_keys(directory: Path) -> list[str]:
    """The keys of the trees in `directory`, most recently used first."""
    keys = [entry.name for entry in directory.iterdir() if entry.is_dir() and KEY.match(entry.name)]
    return sorted(keys, key=lambda key: (last_used(directory, key), key), reverse=True)


def to_remove(keys: list[str], own_key: str, keep: int) -> list[str]:
    """Of `keys` (most recently used first), those beyond the `keep` newest, never `own_key`."""
    others = [key for key in keys if key != own_key]
    return others[max(keep - 1, 0) :]


def remove_unless_used(directory: Path, key: str) -> bool:
    """Remove the tree and its lock file when no build holds the lock; True when it was removed."""
    lock = directory / f"{key}{LOCK_SUFFIX}"
    descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        shutil.rmtree(directory / key)
        lock.unlink(missing_ok=True)
        return True
    finally:
        os.close(descriptor)


def prune(directory: Path, own_key: str, keep: int) -> list[str]:
    removed = []
    for key in to_remove(kept_keys(directory), own_key, keep):
        if remove_unless_used(directory, key):
            removed.append(key)
    return removed


def main(arguments: list[str]) -> int:
    directory, own_key, keep = Path(arguments[0]), arguments[1], int(arguments[2])
    for key in prune(directory, own_key, keep):
        print(f"==> removed the kept install tree {key} (beyond the {keep} most recently used)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
