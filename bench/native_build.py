"""Benchmark of the native engine on this machine: cold build, warm rebuild (ccache, another identity), verification.

Prints times and ratios against the floor measured by hand in ../shared/FACTS.md (Slurm 24.11.5 on Debian 13,
2 cores: deps image + configure + make -j2 + install + relocated checks ≈ 195 s). Nothing here is asserted.

usage: python bench/native_build.py --slurm-source PATH [--keep HOME]
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

FACTS_PIPELINE_SECONDS = 195.0
FACTS_COMPILE_SECONDS = (18 + 128 + 15, 21 + 164 + 17)  # configure + make -j2 + install, best and worst
VERIFY_TARGET_SECONDS = 90.0


def _run(home: Path, project: str, *args: str) -> tuple[float, dict[str, Any]]:
    env = {**os.environ, "SLURM_FACTORY_HOME": str(home), "IF_PROJECT_NAME": project}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "slurm_factory", *args, "--json"], env=env, capture_output=True, text=True, check=False
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{done.stderr}")
    return seconds, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slurm-source", required=True, type=Path)
    parser.add_argument("--keep", type=Path, help="use (and keep) this SLURM_FACTORY_HOME instead of a temporary one")
    options = parser.parse_args()
    project = f"bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="slurm-factory-bench-") as scratch:
        home = options.keep or Path(scratch)
        build = [
            "build-slurm",
            "--engine",
            "native",
            "--toolchain",
            "trixie",
            "--slurm-version",
            "24.11.5",
            "--slurm-source",
            str(options.slurm_source),
        ]
        try:
            cold, cold_result = _run(home, project, *build)
            # The same request again would be reused from the store (bench/reuse.py): the warm-ccache rebuild
            # needs another identity, here the same OS image under another name.
            alias = f"{project}/debian:trixie-alias"
            docker.from_env().images.get("debian:trixie").tag(alias)
            warm, warm_result = _run(home, project, *build, "--base-image", alias)
            verify_cold, _ = _run(home, project, "verify", cold_result["artifact"])
            verify_warm, _ = _run(home, project, "verify", cold_result["artifact"])
        finally:
            client = docker.from_env()
            label = {"label": f"{PROJECT_LABEL}={project}"}
            for image in client.images.list(filters=label):
                client.images.remove(str(image.id), force=True)
            if any(f"{project}/debian:trixie-alias" in image.tags for image in client.images.list()):
                client.images.remove(f"{project}/debian:trixie-alias")
    stages = cold_result["durations"]
    compile_seconds = sum(stages.get(stage, 0.0) for stage in ("configure", "compile", "install"))
    size_mb = cold_result["size"] / 1e6
    print(
        f"cold build (image + compile + artifact): {cold:7.1f} s  = {cold / FACTS_PIPELINE_SECONDS:.2f} x the "
        f"FACTS pipeline ({FACTS_PIPELINE_SECONDS:.0f} s)"
    )
    print(
        f"  configure+make+install:               {compile_seconds:7.1f} s  = "
        f"{compile_seconds / FACTS_COMPILE_SECONDS[0]:.2f} x FACTS best ({FACTS_COMPILE_SECONDS[0]} s)"
    )
    print(f"  stages: {stages}")
    print(f"warm rebuild (ccache):                   {warm:7.1f} s  = {warm / cold:.2f} x cold")
    print(f"  stages: {warm_result['durations']}")
    print(f"verify, images cold:                     {verify_cold:7.1f} s")
    print(
        f"verify, warm:                            {verify_warm:7.1f} s  = "
        f"{verify_warm / VERIFY_TARGET_SECONDS:.2f} x the {VERIFY_TARGET_SECONDS:.0f} s target"
    )
    print(f"tarball: {size_mb:.1f} MB")


if __name__ == "__main__":
    main()
