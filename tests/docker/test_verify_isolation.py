"""The verification stages run an untrusted artifact's programs, so their containers have no way out: the relocated
container has no network at all, the cluster's nodes and its database share an internal network with no gateway
(the host's bridge has no address) and find each other by name; none has a host mount. Checked against the real engine
with a TCP port the test opens on the host's loopback (a host-network container reaches it: the control)."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import docker
import pytest

from slurm_factory.docker_engine import DockerSession, RunningContainer
from slurm_factory.verify.cluster import DATABASE, NODES, node_containers
from slurm_factory.verify.containers import relocated_container

pytestmark = pytest.mark.docker

IMAGE = "debian:trixie"


@pytest.fixture
def session(project_cleanup: str, docker_client: docker.DockerClient) -> DockerSession:
    return DockerSession(project_cleanup, client=docker_client)


@pytest.fixture
def loopback_port() -> Iterator[int]:
    """A listening TCP port on the host's 127.0.0.1 (never any other address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        yield int(server.getsockname()[1])


def _connects(container: RunningContainer, port: int) -> bool:
    code, _ = container.run(["timeout", "5", "bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"])
    return code == 0


def _host_config(client: docker.DockerClient, container: RunningContainer) -> dict[str, object]:
    return dict(client.containers.get(container.id).attrs["HostConfig"])


def test_a_host_network_container_reaches_the_loopback_port(session: DockerSession, loopback_port: int) -> None:
    with session.container(IMAGE, ["sleep", "infinity"], role="probe") as box:
        box.start()
        assert _connects(box, loopback_port), "control: with host networking the port is reachable"


def test_the_relocated_container_has_no_network_and_no_mount(
    session: DockerSession, docker_client: docker.DockerClient, loopback_port: int
) -> None:
    with relocated_container(session, IMAGE) as box:
        box.start()
        assert not _connects(box, loopback_port)
        _, routes = box.run(["cat", "/proc/net/route"])
        assert routes.splitlines()[1:] == [], "no interface but loopback"
        config = _host_config(docker_client, box)
        assert config["NetworkMode"] == "none"
        assert not config.get("Mounts") and not config.get("Binds")


def _bridge_addresses(network_id: str) -> str:
    done = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", f"br-{network_id[:12]}"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return done.stdout.strip()


def test_cluster_nodes_find_each_other_on_an_internal_network_without_a_gateway(
    session: DockerSession, docker_client: docker.DockerClient, loopback_port: int
) -> None:
    with (
        session.network("verify", internal=True) as network_name,
        node_containers(session, IMAGE, network_name) as nodes,
        session.container(
            IMAGE, ["sleep", "infinity"], role="verify-db", network=network_name, hostname=DATABASE
        ) as database,  # fmt: skip
    ):
        database.start()
        for node in nodes.values():
            node.start()
        for name, node in {**nodes, DATABASE: database}.items():
            assert not _connects(node, loopback_port), f"{name} reached the host's loopback port"
            config = _host_config(docker_client, node)
            assert not config.get("Mounts") and not config.get("Binds")
            for other in (peer for peer in (*NODES, DATABASE) if peer != name):
                code, answer = node.run(["getent", "hosts", other])
                assert code == 0 and answer.split()[1:] == [other], answer
        network_name = str(config["NetworkMode"])
        network = docker_client.networks.get(network_name)
        assert network.attrs["Internal"] is True
        assert _bridge_addresses(str(network.id)) == "", "the host's side of the bridge must have no address"
