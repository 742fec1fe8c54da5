"""The check cluster's waits stop as soon as waiting cannot help: the daemon waited for is gone, or the client that
asks cannot run or dies fatally. Exercised against a scripted node (no Docker), with a short real clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from slurm_factory.catalog.toolchains import get_toolchain
from slurm_factory.docker_engine import RunningContainer
from slurm_factory.verify import cluster as cluster_module
from slurm_factory.verify.artifact_reader import ArtifactUnderTest
from slurm_factory.verify.cluster import CONTROLLER, Cluster, Hopeless, node_states

PLUGIN_FATAL = (
    "sacctmgr: error: Couldn't find the specified plugin name for accounting_storage/slurmdbd looking at all files\n"
    "sacctmgr: error: cannot find accounting_storage plugin for accounting_storage/slurmdbd\n"
    "sacctmgr: error: cannot create accounting_storage context for accounting_storage/slurmdbd\n"
    "sacctmgr: fatal: failed to initialize the accounting storage plugin\n"
)
LOADER_FAILURE = "bin/sinfo: error while loading shared libraries: libslurmfull.so: cannot open shared object file"


class ScriptedNode:
    """Answers `run(argv)` from a function of the argv; counts the calls."""

    def __init__(self, answer: Callable[[list[str]], tuple[int, str]]) -> None:
        self.answer = answer
        self.calls: list[list[str]] = []

    def run(self, argv: list[str], **_: Any) -> tuple[int, str]:
        self.calls.append(argv)
        return self.answer(argv)


def _cluster(node: ScriptedNode) -> Cluster:
    artifact = ArtifactUnderTest(
        path=Path("/nonexistent/artifact.tar.gz"),
        root="slurm-24.11.5-trixie",
        manifest={"arch": "amd64", "toolchain": {"base_image": "debian:trixie"}},
        sha256="0" * 64,
        toolchain=get_toolchain("trixie"),
    )
    nodes = {CONTROLLER: cast(RunningContainer, node)}
    cluster = Cluster(database=cast(RunningContainer, node), nodes=nodes, artifact=artifact, database_password="x")
    cluster.root = cluster_module.INSTALL_PREFIX / "artifact"
    return cluster


@pytest.fixture(autouse=True)
def _native_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_module, "emulated", lambda artifact: False)


def _timed(call: Callable[[], tuple[bool, str]]) -> tuple[bool, str, float]:
    started = time.monotonic()
    done, detail = call()
    return done, detail, time.monotonic() - started


def test_a_wait_on_a_daemon_that_is_gone_stops_after_a_few_polls() -> None:
    node = ScriptedNode(lambda argv: (1, "") if argv[0] == "pgrep" else (0, "not yet"))
    cluster = _cluster(node)
    done, detail, seconds = _timed(
        lambda: cluster.wait_for(lambda: (False, "no answer yet"), 60, daemon=(CONTROLLER, "slurmdbd"))
    )
    assert done is False
    assert detail == f"slurmdbd on {CONTROLLER} is not running (no answer yet)"
    assert seconds < 5, "waited for a daemon that had exited"
    assert sum(argv[:2] == ["pgrep", "-x"] for argv in node.calls) == cluster_module.GONE_POLLS


def test_a_running_daemon_is_waited_for_until_the_probe_says_done() -> None:
    node = ScriptedNode(lambda argv: (0, "123"))
    cluster = _cluster(node)
    answers = iter([(False, "starting"), (False, "starting"), (True, "up")])
    done, detail, _ = _timed(lambda: cluster.wait_for(lambda: next(answers), 60, daemon=(CONTROLLER, "slurmctld")))
    assert (done, detail) == (True, "up")


def test_a_daemon_not_yet_exec_d_on_the_first_poll_is_not_given_up_on() -> None:
    polls = iter([1, 0, 0, 0])  # pgrep misses it once (the shell has not exec'd yet), then finds it
    node = ScriptedNode(lambda argv: (next(polls), "") if argv[0] == "pgrep" else (0, ""))
    cluster = _cluster(node)
    answers = iter([(False, "a"), (False, "b"), (False, "c"), (True, "ready")])
    done, _, _ = _timed(lambda: cluster.wait_for(lambda: next(answers), 60, daemon=(CONTROLLER, "slurmd")))
    assert done is True


def test_a_probe_that_cannot_change_its_answer_ends_the_wait_with_its_reason() -> None:
    cluster = _cluster(ScriptedNode(lambda argv: (0, "")))

    def probe() -> tuple[bool, str]:
        raise Hopeless("sinfo cannot run")

    done, detail, seconds = _timed(lambda: cluster.wait_for(probe, 60))
    assert (done, detail) == (False, "sinfo cannot run")
    assert seconds < 1


def test_sinfo_that_cannot_load_its_library_is_hopeless_and_one_that_cannot_reach_slurmctld_is_not() -> None:
    broken = _cluster(ScriptedNode(lambda argv: (127, LOADER_FAILURE)))
    with pytest.raises(Hopeless, match=r"libslurmfull\.so"):
        node_states(broken, CONTROLLER)
    unreachable = "slurm_load_node: Unable to contact slurm controller (connect failure)"
    waiting = _cluster(ScriptedNode(lambda argv: (1, unreachable)))
    assert node_states(waiting, CONTROLLER) == ({}, unreachable)


def test_sacctmgr_dying_on_a_missing_plugin_ends_the_wait_for_slurmdbd_with_the_plugin_named() -> None:
    node = ScriptedNode(lambda argv: (0, "1") if argv[0] == "pgrep" else (1, PLUGIN_FATAL))
    cluster = _cluster(node)
    done, detail, seconds = _timed(
        lambda: cluster.wait_for(lambda: cluster_module._dbd_answers(cluster), 90, daemon=(CONTROLLER, "slurmdbd"))
    )
    assert done is False and seconds < 1
    assert "accounting_storage/slurmdbd" in detail and "fatal: failed to initialize" in detail


def test_sacctmgr_before_slurmdbd_listens_is_asked_again() -> None:
    refused = (
        "sacctmgr: error: Sending PersistInit msg: Connection refused\n"
        "sacctmgr: error: Problem talking to the database: Connection refused\n"
    )
    answers = iter([(1, refused), (1, refused), (0, "mycluster|")])
    node = ScriptedNode(lambda argv: (0, "1") if argv[0] == "pgrep" else next(answers))
    cluster = _cluster(node)
    done, _, _ = _timed(
        lambda: cluster.wait_for(lambda: cluster_module._dbd_answers(cluster), 90, daemon=(CONTROLLER, "slurmdbd"))
    )
    assert done is True
