"""Demos after the evaluation image chain, before tokenisation: what a pack stores and what HDF5 demos become.

Frames go through the evaluation chain up to the resize (180° rotation, JPEG round trip, lanczos3 to 224);
actions stay un-normalised, with the gripper mapped from robosuite (−1 open, +1 close) to OpenVLA's [0, 1]
(1 = open). ``bc_data`` tokenises these; ``pack`` stores them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.core.errors import BenchError, reading
from bench.core.models.processor import env_to_model_gripper, resized_image


def norm_stats(actions: np.ndarray) -> dict:
    """OpenVLA-style statistics of one suite's actions (q01/q99 used for normalisation, gripper unmasked)."""
    return {"action": {"q01": np.quantile(actions, 0.01, axis=0).tolist(), "q99": np.quantile(actions, 0.99, axis=0).tolist(),
                       "mean": actions.mean(0).tolist(), "std": actions.std(0).tolist(),
                       "min": actions.min(0).tolist(), "max": actions.max(0).tolist(), "mask": [True] * 6 + [False]},
            "num_transitions": len(actions)}


@dataclass
class DemoFrames:
    """Demos after the evaluation image chain, before tokenisation: what a pack stores."""

    frames: np.ndarray  # [N, 224, 224, 3] uint8
    actions: np.ndarray  # [N, 7] float64, arm un-normalised, gripper 1 = open … 0 = closed
    demo_index: np.ndarray  # [N] int32: which entry of ``demos`` each frame belongs to
    demos: list[dict]  # per demo: instruction, suite, source, frames (and seed, placement for generated demos)

    def __len__(self) -> int:
        return len(self.actions)

    def suite_stats(self) -> dict[str, dict]:
        suites = np.array([d["suite"] for d in self.demos])[self.demo_index]
        return {s: norm_stats(self.actions[suites == s]) for s in sorted(set(suites))}

    @staticmethod
    def concat(parts: list[DemoFrames]) -> DemoFrames:
        offsets = np.cumsum([0] + [len(p.demos) for p in parts[:-1]])
        return DemoFrames(np.concatenate([p.frames for p in parts]), np.concatenate([p.actions for p in parts]),
                          np.concatenate([p.demo_index + o for p, o in zip(parts, offsets, strict=True)]).astype(np.int32),
                          [d for p in parts for d in p.demos])


def suite_of(path: Path) -> str:
    import h5py

    with reading(path, "LIBERO-layout demo file"), h5py.File(path, "r") as f:
        args = json.loads(f["data"].attrs.get("env_args", "{}"))
    return args.get("suite") or path.parent.name


def read_hdf5_demos(root: str | Path, size: int = 224, log: Callable[[str], None] = print) -> DemoFrames:
    """Every demo under ``root`` (a LIBERO-layout .hdf5 file or a folder of them), through the image chain."""
    from envs.libero import upright
    from envs.libero_hdf5 import demo_files, load_demos

    frames, actions, index, demos = [], [], [], []
    for path in demo_files(root):
        suite = suite_of(path)
        for demo in load_demos(path):
            a = demo.actions.astype(np.float64).copy()
            a[:, 6] = env_to_model_gripper(a[:, 6])
            frames.append(np.stack([resized_image(upright(f), size) for f in demo.agentview]))
            actions.append(a)
            index.append(np.full(len(a), len(demos), np.int32))
            demos.append({"instruction": demo.instruction, "suite": suite, "source": demo.name, "frames": len(a),
                          **({"seed": demo.seed} if demo.seed is not None else {}),
                          **({"placement": demo.placement} if demo.placement is not None else {})})
        log(f"loaded {path.name}")
    if not demos:
        raise BenchError(f"no .hdf5 demo files under {root}")
    return DemoFrames(np.concatenate(frames), np.concatenate(actions), np.concatenate(index), demos)
