"""User-facing errors: the CLI prints them as one line and exits non-zero, never a traceback."""

from __future__ import annotations

import difflib


class BenchError(Exception):
    """An error caused by the user's input or environment, explained in one line."""

    exit_code = 2


def unknown_name(kind: str, name: str, choices: list[str]) -> BenchError:
    """Build a did-you-mean error for an unknown registry name."""
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return BenchError(f"unknown {kind} {name!r}.{hint} Known: {', '.join(sorted(choices))}.")
