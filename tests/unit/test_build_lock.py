"""The per-request build lock: a second build of the same request waits for the first and is told why."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from slurm_factory.build_lock import lock_path, request_lock


def test_a_second_holder_of_the_same_build_waits_for_the_first_and_is_told_who_holds_it(tmp_path: Path) -> None:
    events: list[str] = []
    first_holds, release_first = threading.Event(), threading.Event()

    def first() -> None:
        with request_lock(tmp_path, "abc123", events.append):
            events.append("first holds")
            first_holds.set()
            release_first.wait(timeout=10)
            events.append("first releases")

    thread = threading.Thread(target=first)
    thread.start()
    assert first_holds.wait(timeout=10)
    threading.Timer(0.3, release_first.set).start()
    started = time.monotonic()
    with request_lock(tmp_path, "abc123", events.append):
        events.append("second holds")
    thread.join(timeout=10)

    assert time.monotonic() - started >= 0.25
    assert events[0] == "first holds"
    assert events[1].startswith("waiting for pid ") and events[1].endswith("which builds the same request")
    assert events[2:] == ["first releases", "second holds"]


def test_different_builds_do_not_wait_for_each_other(tmp_path: Path) -> None:
    waits: list[str] = []
    with request_lock(tmp_path, "one", waits.append), request_lock(tmp_path, "two", waits.append):
        assert lock_path(tmp_path, "one").is_file() and lock_path(tmp_path, "two").is_file()
    assert waits == []
