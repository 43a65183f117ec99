"""Shared fixtures: tiny random models, LIBERO frames, a subprocess runner for the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="session")
def frames() -> np.ndarray:
    """Two real LIBERO agentview frames (256×256, OpenGL orientation)."""
    return np.load(FIXTURES / "libero_frames.npz")["frames"]


@pytest.fixture
def tiny_model():
    from bench.core.models.presets import build, tiny

    return build(tiny(), seed=0)


def pixels(model, image: np.ndarray) -> torch.Tensor:
    """The processor's pixel values of a 224² image, on the model's device and dtype."""
    from bench.core.models.processor import OpenVLAProcessor

    return OpenVLAProcessor.pixel_values(image, like=model.projector.fc1.weight)


def run_bench(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd or ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def has_cuda() -> bool:
    return torch.cuda.is_available()


def fake_demo_file(path: Path, n_demos: int = 2, T: int = 6) -> None:
    """A LIBERO-layout demo file with random frames and actions (no simulator), written by our demo writer."""
    from envs.expert import ExpertEpisode
    from envs.libero_hdf5 import append_demo, open_task_file

    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_task_file(path, "pick up the ketchup and place it in the basket", {"suite": "libero_object"}, "x.bddl") as f:
        for seed in range(n_demos):
            obs = [{"agentview_image": rng.integers(0, 256, (256, 256, 3), dtype=np.uint8),
                    "robot0_eef_pos": rng.normal(size=3), "robot0_eef_quat": np.array([0, 0, 0, 1.0]),
                    "robot0_gripper_qpos": rng.normal(size=2), "robot0_joint_pos": rng.normal(size=7)} for _ in range(T)]
            actions = [np.append(rng.uniform(-1, 1, 6), rng.choice([-1.0, 1.0])) for _ in range(T)]
            append_demo(f, ExpertEpisode(True, T, actions, [rng.normal(size=10) for _ in range(T)], obs), seed, 0.0,
                        "site-corrected")
