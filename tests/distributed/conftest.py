"""The local Dask cluster's fixtures (tests/distributed/cluster.py) for the tests in this directory."""

from tests.distributed.cluster import dask_cluster, docker_engines, project, shared_ccache

__all__ = ["dask_cluster", "docker_engines", "project", "shared_ccache"]
