"""The resolved run spec; its hash is the run's identity (same spec ⇒ same run directory ⇒ resume)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.core.errors import BenchError


@dataclass(frozen=True)
class RunSpec:
    suite: str
    tasks: tuple[int, ...]
    episodes_per_task: int
    max_steps: int
    policy: str
    policy_fingerprint: str
    method: str
    method_params: dict[str, Any] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)
    seed: int = 7

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        return d

    @property
    def run_hash(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def episode_keys(self) -> list[tuple[int, int]]:
        """(task_id, init_state_index) pairs in reference order: episode i uses init state i."""
        return planned_keys(self.to_dict())


def planned_keys(spec: dict[str, Any]) -> list[tuple[int, int]]:
    """A spec's planned episodes: ``episodes_per_task`` per task, capped per task where the protocol records
    ``episodes_cap`` (SIMPLER: tasks have matrices of 108–825 episodes; ``--episodes-per-task`` takes each
    task's first N)."""
    n = spec["episodes_per_task"]
    cap = spec.get("protocol", {}).get("episodes_cap", {})
    return [(t, i) for t in spec["tasks"] for i in range(min(n, cap.get(str(t), n)))]


def episode_key(task_id: int, init_index: int) -> str:
    return f"{task_id}:{init_index}"


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise BenchError(f"--device takes cpu, cuda or auto; got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda: no CUDA device is available")
    return device
