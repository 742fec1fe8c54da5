"""The local Dask cluster fixture does what the build-matrix tests rely on: each worker reaches its own Docker
engine through the DOCKER_HOST in its environment, and a worker killed outright leaves the other serving."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.distributed.cluster import DaskCluster, Engine, engine_identity

distributed = pytest.importorskip("distributed")

pytestmark = [pytest.mark.docker, pytest.mark.distributed]


def test_each_worker_talks_to_its_own_engine(dask_cluster: DaskCluster, docker_engines: dict[str, Engine]) -> None:
    with distributed.Client(dask_cluster.scheduler_address, timeout=30) as client:
        seen = {
            name: client.submit(engine_identity, workers=[worker.address], allow_other_workers=False, pure=False)
            for name, worker in dask_cluster.workers.items()
        }
        identities = {name: future.result(timeout=60) for name, future in seen.items()}

    assert set(identities) == set(docker_engines) == {"w1", "w2"}
    for name, worker in dask_cluster.workers.items():
        engine = docker_engines[name]
        assert identities[name] == {"pid": worker.pid, "docker_host": engine.docker_host, "root_dir": engine.root_dir}
    assert identities["w1"]["root_dir"] != identities["w2"]["root_dir"]
    assert identities["w1"]["docker_host"] != identities["w2"]["docker_host"]
    addresses = [dask_cluster.scheduler_address, *(worker.address for worker in dask_cluster.workers.values())]
    assert all(address.startswith("tcp://127.0.0.1:") for address in addresses), addresses


def test_a_killed_worker_leaves_the_other_serving(dask_cluster: DaskCluster) -> None:
    lost, kept = dask_cluster.workers["w1"], dask_cluster.workers["w2"]
    os.kill(lost.pid, signal.SIGKILL)
    with distributed.Client(dask_cluster.scheduler_address, timeout=30) as client:
        deadline = time.monotonic() + 30
        while lost.address in client.scheduler_info()["workers"]:
            assert time.monotonic() < deadline, "the scheduler still lists the killed worker after 30 s"
            time.sleep(0.1)
        identity = client.submit(engine_identity, workers=[kept.address], pure=False).result(timeout=60)
    assert identity["docker_host"] == kept.engine.docker_host
