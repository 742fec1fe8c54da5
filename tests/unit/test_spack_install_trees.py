"""The Spack install trees kept between builds: their key, the plan's mounts, the host's lock and the prune step
(templates/spack/prune_install_trees.py, run by Spack's Python in the build container)."""

from __future__ import annotations

import dataclasses
import fcntl
import importlib.util
import os
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from slurm_factory.config import Settings
from slurm_factory.plan import BuildPlan, layout, make_plan, spack
from slurm_factory.request import make_request
from slurm_factory.spack_install_trees import (
    IMAGE_ID_VARIABLE,
    TREE_KEY_VARIABLE,
    install_tree_key,
    kept_install_tree,
    lock_path,
    tree_key_for,
    tree_lock,
)

IMAGE_ID = "sha256:" + "ab" * 32


def _plan(tmp_path: Path, **options: Any) -> BuildPlan:
    request = make_request(slurm_version="24.11.5", engine="spack", toolchain="trixie", **options)
    return make_plan(request, Settings(project_name="trees", home=tmp_path))


def _with_image_id(plan: BuildPlan, image_id: str = IMAGE_ID) -> BuildPlan:
    environment = {**plan.container.environment, IMAGE_ID_VARIABLE: image_id}
    return dataclasses.replace(plan, container=dataclasses.replace(plan.container, environment=environment))


def _exclusive_lock_free(path: Path) -> bool:
    descriptor = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(descriptor)
    return True


def test_the_key_follows_the_inputs_and_the_image_id() -> None:
    key = install_tree_key("inputs", IMAGE_ID)
    assert len(key) == 32 and key == install_tree_key("inputs", IMAGE_ID)
    assert key != install_tree_key("other inputs", IMAGE_ID)
    assert key != install_tree_key("inputs", "sha256:" + "cd" * 32), "a rebuilt toolchain image starts a new tree"


def test_options_that_do_not_change_what_is_installed_keep_the_same_tree(tmp_path: Path) -> None:
    flat = _plan(tmp_path, os_packages="all", buildcache="all")
    trees = {
        "hierarchy": _plan(tmp_path, os_packages="all", buildcache="all", enable_hierarchy=True),
        "no buildcache": _plan(tmp_path, os_packages="all"),
    }
    assert flat.container.kept_install_tree is not None
    for name, plan in trees.items():
        assert plan.container.kept_install_tree == flat.container.kept_install_tree, name
        assert plan.build_id != flat.build_id, name


def test_inputs_that_change_what_is_installed_are_another_tree(tmp_path: Path) -> None:
    base = _plan(tmp_path, os_packages="all")
    others = {
        "--os-packages": _plan(tmp_path, os_packages="build"),
        "--gpu": _plan(tmp_path, os_packages="all", gpu=True),
        "--slurm-version": make_plan(
            make_request(slurm_version="25.11", engine="spack", toolchain="trixie", os_packages="all"),
            Settings(project_name="trees", home=tmp_path),
        ),
    }
    assert base.container.kept_install_tree is not None
    for name, plan in others.items():
        assert plan.container.kept_install_tree is not None, name
        assert plan.container.kept_install_tree.inputs != base.container.kept_install_tree.inputs, name


def test_the_view_and_the_install_root_are_part_of_the_tree_inputs() -> None:
    document = {"spack": {"specs": ["slurm"], "config": {"install_tree": {"padded_length": 128}}, "view": {"a": 1}}}
    inputs = spack.install_tree_inputs(document, "concretization")
    assert inputs == spack.install_tree_inputs({"spack": {**document["spack"], "mirrors:": {}}}, "concretization")
    padded = {"spack": {**document["spack"], "config": {"install_tree": {"padded_length": 64}}}}
    assert spack.install_tree_inputs(padded, "concretization") != inputs
    assert spack.install_tree_inputs({"spack": {**document["spack"], "view": {"a": 2}}}, "concretization") != inputs
    assert spack.install_tree_inputs(document, "another concretization") != inputs


def test_a_plan_mounts_the_kept_trees_for_the_prune_step_and_no_cache_keeps_none(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    assert plan.container.kept_install_tree is not None
    assert plan.container.kept_install_tree.mount == layout.SPACK_STATE
    assert (tmp_path / "spack-installs", layout.SPACK_INSTALLS) in {
        (m.host, m.container) for m in plan.container.mounts
    }
    assert layout.PLAN / spack.PRUNE_SCRIPT in plan.container.files
    uncached = _plan(tmp_path, no_cache=True)
    assert uncached.container.kept_install_tree is None
    assert layout.SPACK_INSTALLS not in {mount.container for mount in uncached.container.mounts}
    assert layout.PLAN / spack.PRUNE_SCRIPT not in uncached.container.files
    assert "stage install-tree" not in uncached.container.files[layout.PLAN / spack.BUILD_SCRIPT].content


def test_the_build_mounts_its_tree_and_holds_it_in_use(tmp_path: Path) -> None:
    plan = _with_image_id(_plan(tmp_path))
    installs = tmp_path / "spack-installs"
    key = tree_key_for(plan)
    assert key is not None
    with kept_install_tree(plan, installs) as kept:
        assert (installs / key, layout.SPACK_STATE) in {(m.host, m.container) for m in kept.container.mounts}
        assert kept.container.environment[TREE_KEY_VARIABLE] == key
        assert (installs / key).is_dir()
        assert not _exclusive_lock_free(lock_path(installs, key)), "the prune step must not take a tree in use"
    assert _exclusive_lock_free(lock_path(installs, key))


def test_without_an_image_id_or_with_no_cache_nothing_is_kept(tmp_path: Path) -> None:
    installs = tmp_path / "spack-installs"
    for plan in (_plan(tmp_path), _with_image_id(_plan(tmp_path, no_cache=True))):
        assert tree_key_for(plan) is None
        with kept_install_tree(plan, installs) as kept:
            assert kept == plan
    assert not installs.exists() or not list(installs.iterdir())


def test_a_lock_file_replaced_while_waiting_is_opened_again(tmp_path: Path) -> None:
    path = tmp_path / "k.lock"
    path.touch()
    os.utime(path, (0, 0))
    with tree_lock(path):
        assert path.stat().st_mtime > 0, "the lock's mtime says when the tree was last used"
        path.unlink()  # the prune step removed it: the next user creates and locks a new one
    with tree_lock(path):
        assert path.exists()


def test_a_build_of_a_key_in_use_says_so_and_waits(tmp_path: Path) -> None:
    path = tmp_path / "k.lock"
    notes: list[str] = []
    holder = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)
    timer = threading.Timer(0.3, os.close, (holder,))
    timer.start()
    try:
        with tree_lock(path, notes.append):
            assert notes == ["another build uses the kept install tree k; waiting for it"]
    finally:
        timer.join()


# --- the prune step --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pruning() -> ModuleType:
    path = Path(spack.__file__).parent.parent / "templates" / "spack" / spack.PRUNE_SCRIPT
    loaded = importlib.util.spec_from_file_location("prune_install_trees", path)
    assert loaded is not None and loaded.loader is not None
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


def _tree(directory: Path, key: str, used: float | None) -> None:
    (directory / key / "opt").mkdir(parents=True)
    (directory / key / "opt" / "file").write_text("x")
    if used is not None:
        lock = directory / f"{key}.lock"
        lock.touch()
        os.utime(lock, (used, used))


def test_the_newest_trees_and_the_own_stay(pruning: ModuleType) -> None:
    keys = ["d" * 32, "c" * 32, "b" * 32, "a" * 32]  # most recently used first
    assert pruning.to_remove(keys, "d" * 32, 2) == ["b" * 32, "a" * 32]
    assert pruning.to_remove(keys, "a" * 32, 2) == ["c" * 32, "b" * 32], "the own tree always stays"
    assert pruning.to_remove(keys, "a" * 32, 1) == keys[:3]


def test_prune_removes_old_unused_trees_and_their_locks(tmp_path: Path, pruning: ModuleType) -> None:
    own, recent, old, older, unlocked = "1" * 32, "2" * 32, "3" * 32, "4" * 32, "5" * 32
    _tree(tmp_path, own, 400)
    _tree(tmp_path, recent, 300)
    _tree(tmp_path, old, 200)
    _tree(tmp_path, older, 100)
    _tree(tmp_path, unlocked, None)
    (tmp_path / "not-a-tree").mkdir()
    assert pruning.kept_keys(tmp_path) == [own, recent, old, older, unlocked]
    descriptor = os.open(tmp_path / f"{old}.lock", os.O_RDWR)
    fcntl.flock(descriptor, fcntl.LOCK_SH)  # a build is using it
    try:
        assert pruning.prune(tmp_path, own, 2) == [older, unlocked]
    finally:
        os.close(descriptor)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [own, f"{own}.lock", recent, f"{recent}.lock", old, f"{old}.lock", "not-a-tree"]
    )
    assert pruning.prune(tmp_path, own, 2) == [old], "once no build uses it"
