"""Benchmark of reuse: the same `build-slurm` request answered from the artifact store, through the CLI.

Builds the request once cold (or takes an existing SLURM_FACTORY_HOME that already holds it), then runs the same
command several times and prints the median reuse time, its ratio to the cold build, and whether it meets the
target (≤ 2 s). Exit status 1 when the median misses the target or a run was not a reuse.

usage: python bench/reuse.py --slurm-source PATH [--home HOME] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from native_build import _run as run_cli  # bench/ is the script's directory: the same CLI runner

REUSE_TARGET_SECONDS = 2.0


def _cold_seconds(result: dict[str, Any], measured: float) -> float:
    """The cold build's time: measured here, or recorded in the stored artifact's `.build.json`."""
    if not result["reused"]:
        return measured
    record = json.loads(Path(result["stored"] + ".build.json").read_text(encoding="utf-8"))
    return float(record["durations"]["total"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slurm-source", required=True, type=Path)
    parser.add_argument("--home", type=Path, help="a SLURM_FACTORY_HOME to use (and keep); default: a temporary one")
    parser.add_argument("--project", default="slurm-factory", help="the project name of that home's builds")
    parser.add_argument("--runs", type=int, default=7)
    options = parser.parse_args()
    build = ["build-slurm", "--engine", "native", "--toolchain", "trixie", "--slurm-version", "24.11.5",
             "--slurm-source", str(options.slurm_source)]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="slurm-factory-bench-") as scratch:
        home = options.home or Path(scratch)
        first, first_result = run_cli(home, options.project, *build)
        cold = _cold_seconds(first_result, first)
        runs = [run_cli(home, options.project, *build) for _ in range(options.runs)]
    not_reused = [result for _, result in runs if not result["reused"]]
    median = statistics.median(seconds for seconds, _ in runs)
    print(
        f"cold build:            {cold:7.1f} s ({'recorded in .build.json' if first_result['reused'] else 'measured'})"
    )
    print(f"reuse via the CLI:     {median:7.2f} s  median of {options.runs} (min {min(s for s, _ in runs):.2f} s, "
          f"max {max(s for s, _ in runs):.2f} s)")  # fmt: skip
    print(f"reuse / cold:          {median / cold:7.4f}  ({cold / median:.0f} x faster)")
    print(f"target <= {REUSE_TARGET_SECONDS:.0f} s:          {'met' if median <= REUSE_TARGET_SECONDS else 'MISSED'}")
    if not_reused or median > REUSE_TARGET_SECONDS:
        sys.exit(1 if not not_reused else f"{len(not_reused)} runs were not reused")


if __name__ == "__main__":
    main()
