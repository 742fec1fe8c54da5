"""One build of a request at a time per home: a second process asking for the same build waits for the first (and
then finds its artifact) instead of both truncating the same log and racing on the same artifact.

The lock is an advisory `flock` on `logs/<build id>.lock`, released by the kernel if the holder dies.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def lock_path(logs_dir: Path, build_id: str) -> Path:
    return logs_dir / f"{build_id}.lock"


@contextmanager
def request_lock(logs_dir: Path, build_id: str, on_wait: Callable[[str], None]) -> Iterator[None]:
    """Hold the lock of this build id; if another process holds it, say so through `on_wait` and wait."""
    path = lock_path(logs_dir, build_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another slurm-factory process"
            on_wait(f"waiting for {holder}, which builds the same request")
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
