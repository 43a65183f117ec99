"""Demo files in the official LIBERO HDF5 layout; the loader reads ours and the official datasets alike.

Layout (one file per task, ``<task name>_demo.hdf5``)::

    data/                  attrs: problem_info (JSON, has language_instruction), env_args (JSON),
                                  bddl_file_name, num_demos, total, macros_image_convention="opengl"
    data/demo_<i>/         attrs: num_samples, init_state, plus ours: seed, expert_noise, placement
        actions [T,7]  states [T,S]  rewards [T]  dones [T]  robot_states [T,9]
        obs/agentview_rgb [T,H,W,3]  obs/eye_in_hand_rgb  obs/ee_pos [T,3]  obs/ee_ori [T,3]
        obs/ee_states [T,6]  obs/gripper_states [T,2]  obs/joint_states [T,7]

Images are stored as rendered (OpenGL orientation, i.e. upside down), as in the official files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from scipy.spatial.transform import Rotation

from bench.core.errors import reading
from envs.expert import ExpertEpisode

CAMERA_KEYS = {"agentview": "agentview_rgb", "robot0_eye_in_hand": "eye_in_hand_rgb"}


@dataclass
class Demo:
    instruction: str
    actions: np.ndarray  # [T, 7]
    agentview: np.ndarray  # [T, H, W, 3] uint8, OpenGL orientation
    name: str
    seed: int | None = None  # the placement seed of our generated demos (absent in the official datasets)
    placement: str | None = None  # how that seed was placed (envs/libero_placement.py); absent before it was named


def open_task_file(path: Path, instruction: str, env_args: dict, bddl_file: str) -> h5py.File:
    """Open (or create) a task's demo file for appending; the header is written once."""
    f = h5py.File(path, "a")
    if "data" not in f:
        data = f.create_group("data")
        data.attrs["problem_info"] = json.dumps({"language_instruction": instruction})
        data.attrs["env_args"] = json.dumps(env_args)
        data.attrs["bddl_file_name"] = bddl_file
        data.attrs["macros_image_convention"] = "opengl"
        data.attrs["num_demos"] = 0
        data.attrs["total"] = 0
    return f


def recorded_seeds(f: h5py.File) -> set[int]:
    return {int(g.attrs["seed"]) for g in f["data"].values() if "seed" in g.attrs}


def append_demo(f: h5py.File, ep: ExpertEpisode, seed: int, noise: float, placement: str) -> None:
    """Write one successful episode as ``demo_<n>``; flushed at once so a crash loses nothing written."""
    data = f["data"]
    n = int(data.attrs["num_demos"])
    g = data.create_group(f"demo_{n}")
    T = len(ep.actions)
    g.attrs.update(num_samples=T, init_state=ep.states[0], seed=seed, expert_noise=noise, placement=placement)
    g.create_dataset("actions", data=np.asarray(ep.actions))
    g.create_dataset("states", data=np.asarray(ep.states))
    last = np.arange(T) == T - 1  # kept demos end at the success step
    g.create_dataset("rewards", data=last.astype(np.float64))
    g.create_dataset("dones", data=last.astype(np.uint8))
    obs = {k: np.stack([o[k] for o in ep.obs]) for k in ep.obs[0]}
    quat = obs["robot0_eef_quat"]
    ee_ori = Rotation.from_quat(quat).as_rotvec()  # robosuite quats are (x, y, z, w), as scipy's
    o = g.create_group("obs")
    for cam, key in CAMERA_KEYS.items():
        if f"{cam}_image" in obs:
            o.create_dataset(key, data=obs[f"{cam}_image"], compression="gzip", compression_opts=1,
                             chunks=(1, *obs[f"{cam}_image"].shape[1:]))
    o.create_dataset("ee_pos", data=obs["robot0_eef_pos"])
    o.create_dataset("ee_ori", data=ee_ori)
    o.create_dataset("ee_states", data=np.concatenate([obs["robot0_eef_pos"], ee_ori], 1))
    o.create_dataset("gripper_states", data=obs["robot0_gripper_qpos"])
    o.create_dataset("joint_states", data=obs["robot0_joint_pos"])
    g.create_dataset("robot_states", data=np.concatenate([obs["robot0_gripper_qpos"], obs["robot0_eef_pos"], quat], 1))
    data.attrs["num_demos"] = n + 1
    data.attrs["total"] = int(data.attrs["total"]) + T
    f.flush()


def load_demos(path: str | Path) -> Iterator[Demo]:
    """Every demo in a LIBERO-layout file (ours or the official datasets)."""
    with reading(path, "LIBERO-layout demo file"), h5py.File(path, "r") as f:
        instruction = json.loads(f["data"].attrs["problem_info"])["language_instruction"]
        if isinstance(instruction, list):  # some official files store a list of words
            instruction = " ".join(instruction)
        for name in sorted(f["data"], key=lambda s: int(s.split("_")[-1])):
            g = f["data"][name]
            seed = int(g.attrs["seed"]) if "seed" in g.attrs else None
            placement = str(g.attrs["placement"]) if "placement" in g.attrs else None
            yield Demo(instruction.strip(), g["actions"][()], g["obs/agentview_rgb"][()], f"{Path(path).stem}/{name}",
                       seed, placement)


def demo_files(root: str | Path) -> list[Path]:
    root = Path(root)
    files = sorted(root.rglob("*.hdf5")) if root.is_dir() else [root]
    return [p for p in files if p.exists()]
