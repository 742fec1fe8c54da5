"""Jinja2 rendering of the template files shipped in `slurm_factory/templates/`."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import jinja2


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("slurm_factory", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def read_template(name: str) -> str:
    """A file shipped beside the templates that is used as it is (e.g. a Python script run in the container)."""
    return resources.files("slurm_factory").joinpath("templates", name).read_text(encoding="utf-8")


def render(template: str, **context: Any) -> str:
    """Render one template; a missing variable is an error, never an empty string."""
    return _environment().get_template(template).render(**context)
