"""Ctrl-C that stops a run promptly and cleanly, wherever it lands.

A KeyboardInterrupt raised at an arbitrary point can be swallowed (LIBERO's reset retries in a loop whose
``finally: continue`` eats it) or land inside a write. While ``deferred_interrupts()`` is active, the first
SIGINT only sets a flag; the rollout loop, the reset retry loop and the Ray wait loop call
``raise_if_interrupted()`` at safe points (every env step), so the run stops within a step. A second
SIGINT raises at once, for a run stuck somewhere that never checks.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

_requested = False


def _on_sigint(signum: int, frame: object) -> None:
    global _requested
    if _requested:
        raise KeyboardInterrupt
    _requested = True


def interrupted() -> bool:
    return _requested


def raise_if_interrupted() -> None:
    if _requested:
        raise KeyboardInterrupt


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Turn SIGINT into a flag checked at safe points (main thread only; elsewhere a no-op)."""
    global _requested
    try:
        previous = signal.signal(signal.SIGINT, _on_sigint)
    except ValueError:  # not the main thread
        yield
        return
    _requested = False
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _requested = False
