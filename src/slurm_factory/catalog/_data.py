"""Access to the catalog's data files (package data, read-only)."""

from __future__ import annotations

from importlib import resources


def read_data_text(name: str) -> str:
    return resources.files("slurm_factory.catalog").joinpath("data", name).read_text(encoding="utf-8")
