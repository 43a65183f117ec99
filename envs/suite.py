"""What the rollout loop needs from a simulator suite, whatever the simulator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class EvalProtocol:
    """Evaluation constants of a suite; every deviation from the reference is a named flag."""

    max_steps: int
    wait_steps: int
    wait_action: tuple[float, ...]
    env_seed: int
    image_size: int
    flags: dict[str, Any] = field(default_factory=dict)


def camera_frame(obs: dict[str, np.ndarray]) -> np.ndarray:
    """The policy camera's frame, upright: SIMPLER's ``image`` as it is, LIBERO's ``agentview_image`` turned 180°
    (LIBERO renders upside down)."""
    return obs["image"] if "image" in obs else np.ascontiguousarray(obs["agentview_image"][::-1, ::-1])


class Task(Protocol):
    task_id: int
    name: str
    instruction: str
    n_init_states: int

    def reset(self, init_index: int) -> dict[str, np.ndarray]: ...

    def start(self, init_index: int | None, seed: int = 0) -> dict[str, np.ndarray]:
        """Reset (an official init state, or a fresh placement seeded by ``seed`` when None), then the protocol's
        settle steps: the first observation a policy acts on."""
        ...

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], bool]: ...

    def close(self) -> None: ...


class Suite(Protocol):
    name: str
    protocol: EvalProtocol

    def task_ids(self) -> list[int]: ...

    def n_init_states(self, task_id: int) -> int: ...

    def task(self, task_id: int) -> Task: ...
