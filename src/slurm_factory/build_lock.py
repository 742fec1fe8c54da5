"""One build of a request at a time per home: a second process asking for the same build waits for the first (and
then finds its artifact) instead of both truncating the same log and racing on the same artifact.

The lock is an advisory `flock` on `logs/<build id>.lock`, released by the kernel if the holder dies.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path


def lock_path(logs_dir: Path, build_id: str) -> Path:
    return logs_dir / f"{build_id}.lock"


def request_lock(logs_dir: Path, build_id: str, on_wait: Callable[[str], None]) -> AbstractContextManager[None]:
    """Hold the lock of this build id; if another process holds it, say so through `on_wait` and wait."""
    return exclusive(lock_path(logs_dir, build_id), "builds the same request", on_wait)


def image_lock(logs_dir: Path, reference: str, on_wait: Callable[[str], None]) -> AbstractContextManager[None]:
    """One build of a toolchain image at a time (matrix cells of one toolchain start together): the others wait,
    then find the image."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", reference)
    return exclusive(logs_dir / f"image-{name}.lock", f"builds the image {reference}", on_wait)


def publish_lock(logs_dir: Path, mirror: str, on_wait: Callable[[str], None]) -> AbstractContextManager[None]:
    """One Spack push into a mirror at a time from this home: two pushes of the same dependency, or of the index,
    would race on the same files."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", mirror)
    return exclusive(logs_dir / f"publish-{name}.lock", f"pushes to {mirror}", on_wait)


@contextmanager
def exclusive(path: Path, doing: str, on_wait: Callable[[str], None]) -> Iterator[None]:
    """Hold the `flock` on `path`; if another process holds it, say who and what it does through `on_wait`, and
    wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another slurm-factory process"
            on_wait(f"waiting for {holder}, which {doing}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
