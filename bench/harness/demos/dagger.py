"""``bench demos dagger``: DAgger data — the policy acts, the scripted expert labels every state it visits.

One round (Ross et al. 2011, β = 0): for each task, roll the policy out from fresh placements (seeds disjoint
from ``bench demos generate``'s and from the official init states) and label every visited state with the
action of a fresh expert resumed from the scene (``ScriptedExpert.resume_from_scene``), so the label depends on
the state and not on a history the policy never had. Frames and labels are appended to LIBERO-layout files
(``dagger=1`` on each demo group) that ``bench demos pack`` and ``bench train policy`` read like demos; aggregate
them with the demos and fine-tune with ``--init``.

Recovery: at step ``takeover`` of each episode the policy has not solved by then, the sim state is kept; after the
rollout the expert takes over from it (phase from the scene) with the rest of the step budget. The share of
takeovers that succeed says how often the expert recovers from the states this policy reaches — an upper
bound on what its labels there can teach.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.core.interrupt import raise_if_interrupted
from bench.harness.demos.generate import task_file
from envs.expert import ExpertEpisode, ScriptedExpert
from envs.libero import LiberoSuite
from envs.libero_hdf5 import append_demo, open_task_file, recorded_seeds

SEED_BASE = 700_000  # demos use task_id·100000 + k (k < 100000 in practice): these never collide
PLACEMENT = "site-corrected"  # fresh placements as LIBERO meant them (envs/libero_placement.py)


def dagger_round(policy, suite: str, tasks: list[int] | None, episodes: int, out: Path, takeover: int = 100,
                 progress: Callable[[str], None] = print) -> list[dict]:
    """Collect ``episodes`` labelled policy rollouts per task into ``out``; returns one summary row per episode
    (also appended to ``out/<suite>_dagger.jsonl``; a rerun skips episodes already written)."""
    libero = LiberoSuite(suite)
    report = out / f"{suite}_dagger.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for task_id in tasks if tasks is not None else libero.task_ids():
        task = libero.task(task_id, hard_reset=False)
        path = task_file(out, suite, task.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        env_args = {"env_name": task.name, "bddl_file": task.bddl_file, "suite": suite, "task_id": task_id,
                    "camera_names": ["agentview"], "camera_size": task.protocol.image_size, "dagger": True}
        with open_task_file(path, task.instruction, env_args, task.bddl_file) as f:
            done = recorded_seeds(f)
        for k in range(episodes):
            seed = SEED_BASE + task_id * 1000 + k
            if seed in done:
                continue
            ep, row = labelled_rollout(policy, task, seed, takeover)
            with open_task_file(path, task.instruction, env_args, task.bddl_file) as f:
                append_demo(f, ep, seed, 0.0, PLACEMENT)
                f["data"][f"demo_{int(f['data'].attrs['num_demos']) - 1}"].attrs.update(
                    dagger=1, policy_success=row["policy_success"])
            with report.open("a") as r:
                r.write(json.dumps(row) + "\n")
            rows.append(row)
            progress(f"{suite} task {task_id} seed {seed}: policy {'success' if row['policy_success'] else 'failure'} "
                     f"in {row['steps']} steps; expert takeover at {takeover}: {row['recovery']}")
        task.close()
    return rows


def labelled_rollout(policy, task, seed: int, takeover: int) -> tuple[ExpertEpisode, dict]:
    protocol = task.protocol
    obs = task.start(None, seed, PLACEMENT)
    policy.reset(task.instruction, seed)
    env = task.env
    ep, phases, saved, solved = ExpertEpisode(success=False, steps=0), Counter(), None, False
    for step in range(protocol.max_steps):
        raise_if_interrupted()
        if step == takeover:
            saved = env.get_sim_state().copy()
        expert = ScriptedExpert(env.env)
        phases[expert.resume_from_scene()] += 1
        ep.actions.append(expert.act().astype(np.float64))
        ep.states.append(env.get_sim_state().copy())
        ep.obs.append({k: np.asarray(v).copy() for k, v in obs.items()})
        action = policy.act(obs).action
        obs, solved = task.step(action)
        ep.steps = step + 1
        if solved:
            break
    ep.success = solved
    recovery = None if saved is None else expert_takeover(task, saved, protocol.max_steps - takeover)
    return ep, {"task_id": task.task_id, "seed": seed, "policy_success": solved, "steps": ep.steps,
                "label_phases": dict(phases), "takeover_step": takeover if saved is not None else None,
                "recovery": recovery}


def expert_takeover(task, state: np.ndarray, steps: int) -> bool:
    """Does the expert, resumed from the scene at ``state``, finish the task within ``steps``?"""
    task.env.set_init_state(state)
    expert = ScriptedExpert(task.env.env)
    expert.resume_from_scene()
    for _ in range(steps):
        raise_if_interrupted()
        _, done = task.step(expert.act())
        if done:
            return True
    return False


def summarize(rows: list[dict]) -> dict:
    takeovers = [r["recovery"] for r in rows if r["recovery"] is not None]
    return {"episodes": len(rows), "policy_successes": sum(r["policy_success"] for r in rows),
            "labelled_frames": sum(r["steps"] for r in rows), "takeovers": len(takeovers),
            "expert_recoveries": sum(takeovers),
            "label_phases": dict(sum((Counter(r["label_phases"]) for r in rows), Counter()))}
