"""What every ``bench`` sub-command shares: the console, help layout, and parsers of common options."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.console import Console

from bench.core.errors import BenchError

# Plain click help (rich_markup_mode=None), 120 columns: rich's boxed panels cut option names such as
# --episodes-per-task at 80 columns when the output is not a terminal.
HELP_SETTINGS = {"max_content_width": 120, "terminal_width": 120}


def typer_app(help: str, **kwargs: Any) -> typer.Typer:
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None, context_settings=HELP_SETTINGS,
                       **kwargs)


console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def parse_tasks(text: str) -> list[int] | None:
    if text == "all":
        return None
    try:
        tasks = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise BenchError(f"--tasks takes 'all' or comma-separated task ids like 0,3; got {text!r}") from None
    if not tasks:
        raise BenchError(f"--tasks names no task: give 'all' or task ids like 0,3; got {text!r}")
    return tasks


def parse_sets(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BenchError(f"--set takes key=value; got {item!r}")
        out[key] = value
    return out
