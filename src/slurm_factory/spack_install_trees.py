"""Spack install trees kept between builds (`~/.slurm-factory/spack-installs/<key>/`).

A Spack build's install tree and view (layout.SPACK_STATE: the install root, the view, the compiler view, the module
tree) are a host directory bind-mounted at their fixed container path, one per key of what decides their content:
the plan's digest of the concretization inputs and the environment's config and view sections
(plan/spack.py `install_tree_inputs`) and the id of the toolchain image the build runs in. A rebuild of the same
inputs in the same image finds every package of its stored concretization installed and the view up to date, and
installs nothing; a changed input is another key, hence an empty tree. The host holds an exclusive lock on
`<key>.lock` while the build container runs (build and publish steps): builds of one key take turns, since the view
and the module tree in it are regenerated in place. The build script's prune step
(templates/spack/prune_install_trees.py) removes the trees beyond the newest few whose lock it can take.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from slurm_factory.plan.model import BuildPlan, Mount

IMAGE_ID_VARIABLE = "SLURM_FACTORY_TOOLCHAIN_IMAGE_ID"
TREE_KEY_VARIABLE = "SLURM_FACTORY_INSTALL_TREE_KEY"
LOCK_SUFFIX = ".lock"


def install_tree_key(inputs: str, image_id: str) -> str:
    """The key a tree is kept under: what decides its content (plan/spack.py `install_tree_inputs`: the
    concretization inputs, with the image tag, and the install tree's and view's configuration) and the image's id."""
    payload = json.dumps({"inputs": inputs, "image": image_id}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def tree_key_for(plan: BuildPlan) -> str | None:
    """The plan's tree key, or None when it keeps no tree (the native engine, `--no-cache`, no image id)."""
    kept = plan.container.kept_install_tree
    image_id = plan.container.environment.get(IMAGE_ID_VARIABLE)
    if kept is None or not image_id:
        return None
    return install_tree_key(kept.inputs, image_id)


def lock_path(installs_dir: Path, key: str) -> Path:
    return installs_dir / f"{key}{LOCK_SUFFIX}"


@contextmanager
def tree_lock(path: Path, note: Callable[[str], None] | None = None) -> Iterator[None]:
    """An exclusive flock on `path`, created if missing, its mtime the time of this use (the prune step keeps the
    most recently used trees); `note` is told when another build holds it and this one waits. A lock file the prune
    step removed while this waited is opened again."""
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock_or_wait(descriptor, path, note)
            if _same_file(descriptor, path):
                break
        except BaseException:
            os.close(descriptor)
            raise
        os.close(descriptor)
    try:
        os.utime(path)
        yield
    finally:
        os.close(descriptor)


def _lock_or_wait(descriptor: int, path: Path, note: Callable[[str], None] | None) -> None:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        if note is not None:
            note(f"another build uses the kept install tree {path.stem}; waiting for it")
        fcntl.flock(descriptor, fcntl.LOCK_EX)


def _same_file(descriptor: int, path: Path) -> bool:
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(descriptor)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


@contextmanager
def kept_install_tree(
    plan: BuildPlan, installs_dir: Path, note: Callable[[str], None] | None = None
) -> Iterator[BuildPlan]:
    """The plan with its kept install tree mounted and named to the build script, held in use while the block
    runs; the plan unchanged when it keeps none."""
    key = tree_key_for(plan)
    if key is None or plan.container.kept_install_tree is None:
        yield plan
        return
    installs_dir.mkdir(parents=True, exist_ok=True)
    tree = installs_dir / key
    with tree_lock(lock_path(installs_dir, key), note):
        tree.mkdir(exist_ok=True)
        container = dataclasses.replace(
            plan.container,
            mounts=(*plan.container.mounts, Mount(tree, plan.container.kept_install_tree.mount)),
            environment={**plan.container.environment, TREE_KEY_VARIABLE: key},
        )
        yield dataclasses.replace(plan, container=container)
