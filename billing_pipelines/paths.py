"""Where the shipped SQL, templates and static assets are, from a checkout or a wheel."""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@cache
def resource_dir(name: str) -> Path:
    """`sql`, `templates` or `assets`: inside the package in a wheel, beside it in a checkout."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"billing_pipelines: cannot find the {name}/ folder")


def sql(relative: str) -> str:
    """The text of sql/<relative>."""
    return (resource_dir("sql") / relative).read_text()
