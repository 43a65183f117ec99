"""The one rollout loop every suite, policy and method shares."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bench.core import records as R
from bench.core.interrupt import raise_if_interrupted
from bench.harness.policy import Policy
from envs.suite import Task, camera_frame


@dataclass
class EpisodeRecord:
    key: str
    task_id: int
    task_name: str
    init_state_index: int
    success: bool
    steps: int
    first_success_step: int | None
    status: str  # "ok" | "error"
    message: str
    wall_time_s: float
    env_time_s: float  # env.step during policy steps
    policy_time_s: float  # policy.act
    harness_time_s: float  # the rest of the policy-step loop: the harness's own overhead
    actions_sha1: str
    started_at: float  # unix time
    finished_at: float
    summary: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def rollout(
    task: Task,
    init_index: int,
    policy: Policy,
    *,
    max_steps: int,
    episode_seed: int,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    on_frame: Callable[[np.ndarray], None] | None = None,
) -> EpisodeRecord:
    """Run one episode: start at init state ``init_index`` (reset + the suite's settle steps), then at most
    ``max_steps`` policy steps.

    Success is the first ``done`` of a policy step (settle steps ignore ``done``, as in the reference) — or, for
    a task with ``final_step_success`` (SIMPLER), the ``done`` of the last step of a run to the time limit
    (``min(max_steps, task.episode_steps)``). When the task's instruction changes mid-episode (SIMPLER's apple
    task), the policy is reset with the new one, as the reference adapters do.
    Any exception ends the episode as ``status='error'`` with its message; it is never a silent failure.
    """
    t0, started_at = time.perf_counter(), time.time()
    env_time = policy_time = 0.0
    steps, done = 0, False
    actions = hashlib.sha1()
    status, message = "ok", ""
    step_rows: list[dict[str, Any]] = []
    loop_time = 0.0
    try:
        obs = task.start(init_index)
        final_step = getattr(task, "final_step_success", False)
        limit = min(max_steps, getattr(task, "episode_steps", max_steps))
        instruction = task.instruction
        policy.reset(instruction, episode_seed)
        loop_start = time.perf_counter()
        while steps < limit and (final_step or not done):
            raise_if_interrupted()
            if on_frame is not None:
                on_frame(camera_frame(obs))
            t = time.perf_counter()
            result = policy.act(obs)
            t1 = time.perf_counter()
            action = result.action
            obs, done = task.step(action)
            t2 = time.perf_counter()
            policy_time += t1 - t
            env_time += t2 - t1
            actions.update(np.asarray(action, dtype=np.float64).tobytes())
            steps += 1
            row = {R.STEP: steps - 1, R.POLICY_S: t1 - t, R.ENV_S: t2 - t1,
                   R.ACTION: [round(float(a), 6) for a in action], **result.record}
            step_rows.append(row)
            if on_step is not None:
                on_step(row)
            if task.instruction != instruction:
                instruction = task.instruction
                policy.reset(instruction, episode_seed)
        loop_time = time.perf_counter() - loop_start
    except Exception as exc:
        status, message = "error", f"{type(exc).__name__}: {exc}"
    return EpisodeRecord(
        key=f"{task.task_id}:{init_index}",
        task_id=task.task_id,
        task_name=task.name,
        init_state_index=init_index,
        success=bool(done) and status == "ok",
        steps=steps,
        first_success_step=steps if done else None,
        status=status,
        message=message,
        wall_time_s=time.perf_counter() - t0,
        env_time_s=env_time,
        policy_time_s=policy_time,
        harness_time_s=max(0.0, loop_time - env_time - policy_time),
        actions_sha1=actions.hexdigest(),
        started_at=started_at,
        finished_at=time.time(),
        summary=summarize_steps(step_rows),
    )


def summarize_steps(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-episode medians/means of numeric per-step fields (latencies, MACs, token counts)."""
    if not rows:
        return {}
    out: dict[str, Any] = {}
    keys = {k for r in rows for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for k in sorted(keys - {R.STEP}):
        vals = np.array([r[k] for r in rows if k in r], dtype=np.float64)
        out[R.summary_field(k, "mean")] = float(vals.mean())
        out[R.summary_field(k, "median")] = float(np.median(vals))
    return out
