"""Run the planned episodes of a spec that are not yet in its store (resume = planned − finished)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.harness.policy import Policy
from bench.harness.rollout import rollout
from bench.harness.spec import RunSpec, episode_key
from bench.harness.store import RunStore, latest_by_key, materialize_steps, read_episodes
from envs.suite import Suite


@dataclass
class RunResult:
    run_dir: Path
    ran: int
    planned: int
    successes: int
    finished: int
    errors: int


def episode_seed(spec: RunSpec, task_id: int, init_index: int) -> int:
    """Per-episode seed for policy/method RNGs: a function of the episode key, never of run order."""
    return (spec.seed * 1_000_003 + task_id * 1_009 + init_index) % (2**31)


def pending(spec: RunSpec, store: RunStore, retry_errors: bool, progress: Any) -> list[tuple[int, int]]:
    """Planned episode keys not yet in the store (every executor resumes this way)."""
    done = store.finished(retry_errors=retry_errors)
    todo = [k for k in spec.episode_keys() if episode_key(*k) not in done]
    if progress is not None:
        progress.start(total=len(spec.episode_keys()), already=len(spec.episode_keys()) - len(todo))
    return todo


def finish(spec: RunSpec, store: RunStore, ran: int) -> RunResult:
    """Write steps.parquet and count what the run now holds for its planned episodes."""
    materialize_steps(store.dir)
    latest = latest_by_key(read_episodes(store.dir))
    planned = {episode_key(*k) for k in spec.episode_keys()}
    mine = [r for k, r in latest.items() if k in planned]
    return RunResult(run_dir=store.dir, ran=ran, planned=len(planned), successes=sum(r["success"] for r in mine),
                     finished=len(mine), errors=sum(r["status"] == "error" for r in mine))


def run_episode(spec: RunSpec, task: Any, init_index: int, policy: Policy,
                video_dir: Path | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One episode with its seeds set from the episode key: the unit every executor runs."""
    seed = episode_seed(spec, task.task_id, init_index)
    random.seed(seed)
    np.random.seed(seed % (2**32))  # policy-side only; the env's fixture RNG is managed by the task
    torch.manual_seed(seed)
    steps: list[dict[str, Any]] = []
    with _video(video_dir, task.task_id, init_index) if video_dir else nullcontext() as frames:
        record = rollout(
            task, init_index, policy,
            max_steps=spec.max_steps,
            episode_seed=seed,
            on_step=steps.append,
            on_frame=frames.append if frames is not None else None,
        )
    return record.to_json(), steps


def execute(
    spec: RunSpec,
    suite: Suite,
    policy: Policy,
    store: RunStore,
    manifest: dict[str, Any],
    environment: dict[str, Any],
    *,
    video: bool = False,
    retry_errors: bool = False,
    progress: Any = None,
) -> RunResult:
    """Run the store's pending episodes in this process (the caller holds the store, and so its lock)."""
    store.write_manifest_once(manifest)
    store.log_invocation(environment)
    todo = pending(spec, store, retry_errors, progress)
    ran = 0
    with keep_steps_on_interrupt(store):
        for task_id in dict.fromkeys(t for t, _ in todo):
            task = suite.task(task_id)
            try:
                for _, init_index in (k for k in todo if k[0] == task_id):
                    record, steps = run_episode(spec, task, init_index, policy, store.dir if video else None)
                    store.append_episode(record, steps)
                    ran += 1
                    if progress is not None:
                        progress.advance(record)
            finally:
                task.close()
    return finish(spec, store, ran)


@contextmanager
def keep_steps_on_interrupt(store: RunStore) -> Iterator[None]:
    """On Ctrl-C, still write steps.parquet for the episodes already recorded, then let the interrupt go on."""
    try:
        yield
    except KeyboardInterrupt:
        materialize_steps(store.dir)
        raise


class _video:
    """Collect the (rotated) agentview frames of one episode and write videos/<task>_<idx>.mp4 at 30 fps."""

    def __init__(self, run_dir: Path, task_id: int, init_index: int) -> None:
        self.path = run_dir / "videos" / f"task{task_id:02d}_ep{init_index:02d}.mp4"
        self.frames: list[np.ndarray] = []

    def __enter__(self) -> list[np.ndarray]:
        return self.frames

    def __exit__(self, *exc: object) -> None:
        if self.frames:
            import imageio.v2 as imageio

            self.path.parent.mkdir(parents=True, exist_ok=True)
            imageio.mimwrite(self.path, self.frames, fps=30, macro_block_size=1)
