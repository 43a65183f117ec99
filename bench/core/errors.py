"""User-facing errors: the CLI prints them as one line and exits non-zero, never a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class BenchError(Exception):
    """An error caused by the user's input or environment, explained in one line."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def unknown_name(kind: str, name: str, choices: list[str]) -> BenchError:
    """Build a did-you-mean error for an unknown registry name."""
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return BenchError(f"unknown {kind} {name!r}.{hint} Known: {', '.join(sorted(choices))}.")


@contextmanager
def reading(path: str | Path, what: str) -> Iterator[None]:
    """Turn any failure while reading a user-supplied file into one line that names the file and its kind."""
    try:
        yield
    except BenchError:
        raise
    except Exception as exc:
        raise BenchError(f"{path} is not a readable {what}: {type(exc).__name__}: {exc}") from None
