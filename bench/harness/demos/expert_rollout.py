"""One scripted-expert episode under the evaluation protocol (settle steps, step budget, success = done)."""

from __future__ import annotations

import numpy as np

from envs.expert import ExpertEpisode, ScriptedExpert
from envs.libero import LiberoTask

PROPRIO_KEYS = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "robot0_joint_pos")


def run_expert(task: LiberoTask, init_index: int | None, noise: float = 0.0, seed: int = 0, record: bool = False,
               max_steps: int | None = None, placement: str = "site-corrected") -> ExpertEpisode:
    """Reset (official init state, or a fresh ``placement`` seeded by ``seed`` when ``init_index`` is None),
    settle, then let the expert act until success or the step budget."""
    protocol = task.protocol
    obs = task.start(init_index, seed, placement)
    env = task.env
    rng = np.random.default_rng(seed)
    ep = ExpertEpisode(success=False, steps=0)
    try:
        expert = ScriptedExpert(env.env)
    except NotImplementedError as e:  # a goal the expert has no skill for (e.g. push a plate)
        ep.error = str(e)
        return ep
    for step in range(max_steps or protocol.max_steps):
        try:
            action = expert.act()
        except (NotImplementedError, ValueError) as e:  # e.g. no grasp found for a flat plate
            ep.error = f"{type(e).__name__}: {e}"
            break
        if record:
            ep.actions.append(action.astype(np.float64))
            ep.states.append(env.get_sim_state().copy())
            ep.obs.append({k: np.asarray(v).copy() for k, v in obs.items()})
        executed = action.copy()
        if noise:  # DART-style: perturb what is executed, record the expert's clean correction
            executed[:6] = np.clip(executed[:6] + rng.normal(0.0, noise, 6), -1, 1)
        obs, done = task.step(executed)
        ep.steps = step + 1
        if done:
            ep.success = True
            break
    return ep
