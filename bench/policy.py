"""The policy side of the rollout contract."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Policy(Protocol):
    """A closed-loop policy. ``act`` returns the env action and a per-step record (timings, FLOPs, tokens)."""

    name: str

    def reset(self, instruction: str, episode_seed: int) -> None: ...

    def act(self, obs: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, Any]]: ...

    def fingerprint(self) -> str: ...

    def describe(self) -> dict[str, Any]: ...
