"""Reading a concretized Spack environment (`spack.lock`, copied out of the build container).

The lock holds the whole dependency graph with Spack's dependency types; the artifact's manifest uses it to know
which packages Slurm needs at run time (link and run dependencies, transitively) as opposed to those that only
built it.
"""

from __future__ import annotations

import json
from typing import Any


def _specs(lock: dict[str, Any]) -> dict[str, dict[str, Any]]:
    specs = lock.get("concrete_specs")
    return specs if isinstance(specs, dict) else {}


def run_time_closure(lock_text: str | None, root: str) -> set[str]:
    """Names of the packages `root` links against or runs with, directly or through others (itself included);
    empty when there is no lock or no such root."""
    if not lock_text:
        return set()
    lock = json.loads(lock_text)
    specs = _specs(lock)
    pending = [digest for digest, spec in specs.items() if spec.get("name") == root]
    seen: set[str] = set()
    while pending:
        digest = pending.pop()
        if digest in seen or digest not in specs:
            continue
        seen.add(digest)
        for dependency in specs[digest].get("dependencies", []):
            deptypes = dependency.get("parameters", {}).get("deptypes", [])
            if "link" in deptypes or "run" in deptypes:
                pending.append(dependency["hash"])
    return {str(specs[digest]["name"]) for digest in seen}
