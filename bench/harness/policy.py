"""The policy side of the rollout contract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass
class StepResult:
    """One policy step, returned explicitly (no ``last_*`` side channels).

    ``record`` is the per-step row the store keeps (its fields: ``bench/core/records.py``); the rest is for
    in-process readers — LAC's teacher data wants the model image and tokens, fidelity the tokens,
    the profiler's token masks the prefill plan.
    """

    action: np.ndarray  # the env action
    record: dict[str, Any]
    tokens: list[int] | None = None  # the model's action tokens, where it has them
    image: np.ndarray | None = None  # the model's input image (after its processor)
    prefill: Any = None  # the prefill plan (``bench.core.models.steering.PrefillState``) of a token-steered model


class Policy(Protocol):
    """A closed-loop policy. ``act`` returns the env action and a per-step record (timings, FLOPs, tokens)."""

    name: str

    def reset(self, instruction: str, episode_seed: int) -> None: ...

    def act(self, obs: dict[str, np.ndarray]) -> StepResult: ...

    def fingerprint(self) -> str: ...

    def describe(self) -> dict[str, Any]: ...
