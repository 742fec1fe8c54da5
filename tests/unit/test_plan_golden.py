"""Golden files: the rendered build context of every toolchain (and GPU variant) is reviewed text.

Regenerate after an intended change with `SLURM_FACTORY_UPDATE_GOLDEN=1 pytest tests/unit/test_plan_golden.py`
and review the diff like code.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slurm_factory.catalog import load_toolchains
from slurm_factory.config import Settings
from slurm_factory.plan import make_plan
from slurm_factory.request import make_request

GOLDEN = Path(__file__).parent.parent / "golden" / "native"
UPDATE = os.environ.get("SLURM_FACTORY_UPDATE_GOLDEN") == "1"


def _variants() -> list[tuple[str, bool]]:
    variants = []
    for name, toolchain in load_toolchains().items():
        variants.append((name, False))
        if toolchain.native.supports_gpu:
            variants.append((name, True))
    return variants


@pytest.mark.parametrize(("toolchain", "gpu"), _variants(), ids=lambda v: str(v))
def test_native_build_context_matches_golden_files(toolchain: str, *, gpu: bool, tmp_path: Path) -> None:
    request = make_request(slurm_version="24.11.5", toolchain=toolchain, engine="native", gpu=gpu)
    plan = make_plan(request, Settings(project_name="golden", home=tmp_path))
    directory = GOLDEN / f"{toolchain}{'-gpu' if gpu else ''}"
    rendered = {name: plan_file.content for name, plan_file in plan.context_files().items()}
    if UPDATE:
        for name, content in rendered.items():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            (directory / name).write_text(content, encoding="utf-8")
    expected = {
        str(p.relative_to(directory)): p.read_text(encoding="utf-8") for p in directory.rglob("*") if p.is_file()
    }
    assert sorted(rendered) == sorted(expected)
    for name, content in rendered.items():
        assert content == expected[name], f"{directory.name}/{name} differs from its golden file"
