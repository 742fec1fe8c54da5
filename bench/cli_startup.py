"""How long `--help` and shell completion take (budget: 0.3 s), as the median of repeated runs of the installed CLI.

Prints each command's median and best time and its ratio to the budget. Nothing here is asserted.

usage: python bench/cli_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

BUDGET_SECONDS = 0.3
COMMANDS = {
    "slurm-factory --help": (["--help"], {}),
    "build-slurm --help": (["build-slurm", "--help"], {}),
    "verify --help": (["verify", "--help"], {}),
    "complete --toolchain": (
        [],
        {
            "_SLURM_FACTORY_COMPLETE": "complete_bash",
            "COMP_WORDS": "slurm-factory build-slurm --toolchain ro",
            "COMP_CWORD": "3",
        },
    ),
}


def _time_once(executable: str, arguments: list[str], extra_environment: dict[str, str]) -> float:
    environment = {**os.environ, **extra_environment}
    started = time.perf_counter()
    subprocess.run([executable, *arguments], env=environment, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    options = parser.parse_args()
    executable = shutil.which("slurm-factory") or sys.exit("slurm-factory is not on PATH (activate the venv)")
    print(f"{'command':24} {'median':>8} {'best':>8} {'median/budget':>14}")
    for name, (arguments, environment) in COMMANDS.items():
        _time_once(executable, arguments, environment)  # warm the page cache
        times = [_time_once(executable, arguments, environment) for _ in range(options.runs)]
        median = statistics.median(times)
        print(f"{name:24} {median:8.3f} {min(times):8.3f} {median / BUDGET_SECONDS:14.2f}")


if __name__ == "__main__":
    main()
