"""SIMPLER (Google robot) suites for the rollout loop: the reference evaluator's episode, one env per episode.

``simpler_env`` and ``mani_skill2_real2sim`` are not on PyPI (git clone --recurse-submodules SimplerEnv, then
``pip install -e`` both; SAPIEN 2.2.2 needs a Vulkan device and has no CPU fallback). Without them a suite still
has its matrix (``envs/simpler_matrix.py``) for counting and aggregation, and ``bench run`` answers one line
naming what is missing. **Not run against the simulator here**: the env calls below follow the reference
evaluator (``simpler_env/evaluation/maniskill2_evaluator.py``) and are untested on a real install.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.core.errors import BenchError
from envs.simpler_matrix import MATRICES, Episode, final_step_success, matrix
from envs.suite import EvalProtocol

GOOGLE_ROBOT = {
    "robot": "google_robot_static",
    "sim_freq": 513,
    "control_freq": 3,
    "control_mode": "arm_pd_ee_delta_pose_align_interpolate_by_planner_gripper_pd_joint_target_delta_pos_interpolate_by_planner",
}
CAMERA = "overhead_camera"
INSTALL_HINT = ("SIMPLER needs simpler_env and mani_skill2_real2sim, which are not on PyPI: git clone "
                "--recurse-submodules the SimplerEnv repository, pip install -e it and its ManiSkill2_real2sim "
                "submodule (Python 3.10/3.11, numpy<2), and run from the SimplerEnv root")


def require_simulator() -> Any:
    """Import the simulator or raise one clear line: the missing package, or the missing Vulkan device."""
    try:
        import mani_skill2_real2sim.envs  # noqa: F401 - registers the env ids
        import sapien.core as sapien
        import simpler_env  # noqa: F401
    except ImportError as exc:
        raise BenchError(f"{INSTALL_HINT} (import failed: {exc.name or exc})") from None
    try:
        sapien.SapienRenderer()
    except RuntimeError as exc:
        raise BenchError(f"SIMPLER needs a Vulkan device (SAPIEN 2.2.2 has no CPU fallback; MIG slices lack "
                         f"Vulkan): {exc}") from None
    return sapien


def yaw_quat(yaw: float) -> list[float]:
    """wxyz quaternion of rpy (0, 0, yaw) ∘ the scripts' centre ``0 0 0 1`` — read by sapien as wxyz, i.e. a
    180° turn about z (a documented reference quirk, reproduced as given)."""
    qz = [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]
    w1, x1, y1, z1 = qz
    w2, x2, y2, z2 = 0.0, 0.0, 0.0, 1.0
    return [w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2]


def reset_options(ep: Episode) -> dict[str, Any]:
    x, y, yaw = ep.robot
    kind, value = ep.obj
    obj = {"init_xy": list(value)} if kind == "xy" else {"episode_id": value}
    return {"robot_init_options": {"init_xy": [x, y], "init_rot_quat": yaw_quat(yaw)}, "obj_init_options": obj}


@dataclass
class SimplerTask:
    suite: str
    task_id: int
    name: str
    episodes: list[Episode]
    protocol: EvalProtocol
    instruction: str = ""
    episode_steps: int = 0  # the current episode's time limit (80, 113 or 200 by task)
    final_step_success: bool = True  # the evaluator keeps the last step's success, and runs to the time limit
    _env: Any = None
    _infos: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_init_states(self) -> int:
        return len(self.episodes)

    def _obs(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        return {"image": obs["image"][CAMERA]["rgb"]}

    def start(self, init_index: int | None, seed: int = 0) -> dict[str, np.ndarray]:
        """A new env per episode (every env seeds its RNG with 2022 in __init__, so the sim is deterministic)."""
        import gymnasium as gym

        if init_index is None:
            raise BenchError("SIMPLER episodes come from the evaluation matrix; fresh placements are LIBERO-only")
        ep = self.episodes[init_index]
        self.close()
        kwargs = dict(ep.kwargs)
        self._env = gym.make(ep.env_id, obs_mode="rgbd", max_episode_steps=ep.max_steps, scene_name=ep.scene,
                             camera_cfgs={"add_segmentation": True}, rgb_overlay_path=ep.overlay, **GOOGLE_ROBOT,
                             **kwargs)
        obs, _ = self._env.reset(options=reset_options(ep))
        self.instruction = self._env.get_language_instruction()
        self.episode_steps, self._infos = ep.max_steps, []
        return self._obs(obs)

    def reset(self, init_index: int) -> dict[str, np.ndarray]:
        return self.start(init_index)

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], bool]:
        """``action`` = [xyz, axis-angle, gripper]; returns the obs and the step's success flag (final-step
        semantics: the rollout keeps going to the time limit and scores the last flag)."""
        obs, _, _, _, info = self._env.step(np.asarray(action, dtype=np.float64))
        self._infos.append(dict(info))
        self.instruction = self._env.get_language_instruction()  # the apple task changes it mid-episode
        return self._obs(obs), final_step_success(self._infos)

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None


class SimplerSuite:
    """A Google-robot SIMPLER suite: four tasks (coke can, move near, drawer, apple in drawer), the episodes of
    the reference scripts' matrix as init states."""

    def __init__(self, name: str, check: bool = True) -> None:
        if name not in MATRICES:
            raise BenchError(f"unknown SIMPLER suite {name!r}; known: {', '.join(MATRICES)}")
        self.name = name
        self._tasks = matrix(name)
        steps = max(e.max_steps for _, eps in self._tasks for e in eps)
        self.protocol = EvalProtocol(max_steps=steps, wait_steps=0, wait_action=(0.0,) * 7, env_seed=2022,
                                     image_size=512, flags={"success": "final_step", "env": "new per episode", "cap_episodes": True})
        if check:
            require_simulator()

    def task_ids(self) -> list[int]:
        return list(range(len(self._tasks)))

    def n_init_states(self, task_id: int) -> int:
        return len(self._tasks[task_id][1])

    def task(self, task_id: int) -> SimplerTask:
        if task_id not in self.task_ids():
            raise BenchError(f"{self.name} has tasks 0..{len(self._tasks) - 1}; got {task_id}")
        name, episodes = self._tasks[task_id]
        return SimplerTask(self.name, task_id, name, episodes, self.protocol)
