"""Benchmark of `build-matrix --scheduler` against the same cells built one after the other.

Starts a Dask scheduler and one single-thread worker per extra Docker engine on 127.0.0.1 (the engines must run:
`scripts/testenv engine w1`, `scripts/testenv engine w2`), builds the native trixie 24.11.5 `--gpu both` matrix
there, then the same two cells with `--jobs 1` on this host's default engine. Every home is fresh (cold ccache, no
stored artifact) and every project new (its toolchain images are built in the run). Prints both times and the ratio.
Nothing here is asserted.

Both engines of this benchmark share the machine's cores: the ratio shows how much of a cell does not use all cores
(image, configure, install, artifact), not what more hosts would add.

usage: python bench/matrix_distributed.py --slurm-source PATH [--engines w1,w2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import docker

from slurm_factory.docker_engine import PROJECT_LABEL

REPO = Path(__file__).resolve().parents[1]
CELLS = ("--engine", "native", "--toolchain", "trixie", "--slurm-version", "24.11.5", "--gpu", "both")


def _engine_host(name: str) -> str:
    out = subprocess.run(
        [str(REPO / "scripts" / "testenv"), "engine-host", name], check=True, capture_output=True, text=True
    ).stdout
    return out.strip().removeprefix("DOCKER_HOST=")


def _matrix(home: Path, project: str, source: Path, *extra: str) -> tuple[float, dict[str, Any]]:
    env = {**os.environ, "SLURM_FACTORY_HOME": str(home), "IF_PROJECT_NAME": project}
    env.pop("DOCKER_HOST", None)
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "slurm_factory",
            "build-matrix",
            *CELLS,
            "--slurm-source",
            str(source),
            "--json",
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"build-matrix {' '.join(extra)} failed:\n{done.stderr[-3000:]}\n{done.stdout[-3000:]}")
    return seconds, json.loads(done.stdout)


def _start_cluster(scratch: Path, engines: dict[str, str]) -> tuple[str, list[subprocess.Popen[bytes]]]:
    scheduler_file = scratch / "scheduler.json"
    base = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "SLURM_FACTORY_HOME")}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(scheduler_file)],
            env=base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    ]  # fmt: skip
    while not scheduler_file.exists():
        time.sleep(0.2)
    time.sleep(0.5)
    address = json.loads(scheduler_file.read_text())["address"]
    for name, host in engines.items():
        env = {**base, "DOCKER_HOST": host, "SLURM_FACTORY_HOME": str(scratch / f"{name}-home")}
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--host", "127.0.0.1",
                 "--nthreads", "1", "--no-nanny", "--name", name, "--no-dashboard",
                 "--dashboard-address", "127.0.0.1:0", "--local-directory", str(scratch / f"{name}-space")],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
    import distributed

    with distributed.Client(address, timeout=60) as client:
        client.wait_for_workers(len(engines), timeout=60)
    return address, processes


def _remove_project(base_url: str | None, project: str) -> None:
    client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
    label = {"label": f"{PROJECT_LABEL}={project}"}
    for container in client.containers.list(all=True, filters=label):
        container.remove(force=True)
    for image in client.images.list(filters=label):
        client.images.remove(str(image.id), force=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slurm-source", required=True, type=Path)
    parser.add_argument("--engines", default="w1,w2", help="the extra engines, one Dask worker each")
    options = parser.parse_args()
    engines = {name: _engine_host(name) for name in options.engines.split(",")}
    project = f"bench-mx-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="slurm-factory-bench-") as scratch_text:
        scratch = Path(scratch_text)
        address, processes = _start_cluster(scratch, engines)
        try:
            spread, spread_result = _matrix(
                scratch / "requester", project, options.slurm_source, "--scheduler", address
            )
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=60)
            for host in engines.values():
                _remove_project(host, project)
        try:
            one_by_one, sequential_result = _matrix(scratch / "local", project, options.slurm_source, "--jobs", "1")
        finally:
            _remove_project(None, project)
    for label, result in (("--scheduler", spread_result), ("--jobs 1", sequential_result)):
        cells = ", ".join(f"{cell['name']} {cell['seconds']:.0f}s on {cell['where']}" for cell in result["cells"])
        print(f"{label:12} {result['seconds']:7.0f}s  ({cells})")
    print(f"ratio        {spread / one_by_one:.2f}  (2 Dask workers, one engine each, on this machine's cores)")


if __name__ == "__main__":
    main()
