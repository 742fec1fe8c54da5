"""YAML for Spack: the environment is a dict; spec strings are always written as double-quoted scalars.

An unquoted spec such as `pmix@6:` is a YAML mapping, and `languages:='c,c++'` is worse: quoting every spec is the
only safe rule, so specs are wrapped in `Spec` and the dumper emits them with double quotes.
"""

from __future__ import annotations

from typing import Any

import yaml


class Spec(str):
    """A Spack spec string; always dumped as a double-quoted scalar."""

    __slots__ = ()


class _SpackDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_spec(dumper: yaml.SafeDumper, data: Spec) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(data), style='"')


_SpackDumper.add_representer(Spec, _represent_spec)


def dump_spack_yaml(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_SpackDumper, sort_keys=False, default_flow_style=False, width=120)
