"""Frame traces for performance mode: real LIBERO frames recorded once, replayed through every method."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.core.errors import BenchError, reading

TRACE_FILE = "trace.npz"


def record_trace(suite_name: str, task_id: int, steps: int, out: Path) -> Path:
    """Drive a real LIBERO episode with the embedded tiny baseline policy and save its agentview frames."""
    from bench.harness.openvla_policy import load_openvla_policy
    from envs.libero import LiberoSuite
    from methods.baseline import Baseline

    suite = LiberoSuite(suite_name)
    task = suite.task(task_id)
    policy = load_openvla_policy("tiny-openvla", None, Baseline(), suite_name)
    try:
        obs = task.start(0)
        policy.reset(task.instruction, 0)
        frames = []
        for _ in range(steps):
            frames.append(obs["agentview_image"].copy())
            action = policy.act(obs).action
            obs, _ = task.step(action)
    finally:
        task.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, frames=np.stack(frames), instruction=task.instruction, suite=suite_name, task_id=task_id)
    return out


def load_trace(path: Path) -> tuple[np.ndarray, str, str]:
    """(frames [N, H, W, 3] uint8, instruction, suite) from a trace file or a directory holding trace.npz."""
    path = Path(path)
    if path.is_dir():
        path = path / TRACE_FILE
    if not path.exists():
        raise BenchError(f"no frame trace at {path} (record one with `bench profile --record N`)")
    with reading(path, "frame trace (.npz with frames, instruction, suite)"):
        data = np.load(path)
        return data["frames"], str(data["instruction"]), str(data["suite"])
