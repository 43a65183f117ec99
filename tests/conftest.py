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
    from bench.models.presets import build, tiny

    return build(tiny(), seed=0)


def run_bench(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd or ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def has_cuda() -> bool:
    return torch.cuda.is_available()
