"""Episodes on Ray actors: each actor loads the policy once and builds its LIBERO envs lazily in its own
process (no EGL/CUDA context crosses a fork); the driver streams records into the same run store.

Scheduling keeps the fixture-RNG protocol exact *and* cheap: a task's pending episodes are cut into
contiguous blocks (one per worker when there are fewer tasks than workers), and an actor runs a block in
order, so it replays the reset chain once per block (``envs.libero`` makes episode i's fixtures
independent of which process runs it). A dead actor (killed, OOM, simulator segfault) is restarted by
Ray; its in-flight episode is retried elsewhere up to ``max_retries`` times, then recorded as an error.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError
from bench.core.interrupt import raise_if_interrupted
from bench.harness.runner import RunResult, finish, keep_steps_on_interrupt, pending
from bench.harness.spec import RunSpec, episode_key
from bench.harness.store import RunStore


@dataclass(frozen=True)
class RayOptions:
    workers: int = 2
    gpus_per_worker: float = 0.0
    address: str | None = None
    max_retries: int = 2
    threads_per_worker: int = 1


class EpisodeWorker:
    """A Ray actor: one policy, the LIBERO task it is on, and the episodes it is asked for."""

    def __init__(self, recipe: Any, spec: RunSpec, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        from bench.harness.registry import SUITES

        self.spec = spec
        self.suite = SUITES.load(spec.suite)(spec.suite)
        self.policy = recipe.build()
        self.task: Any = None

    def describe(self) -> dict[str, Any]:
        return self.policy.describe()

    def pid(self) -> int:
        return os.getpid()

    def run(self, task_id: int, init_index: int, video_dir: str | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        from bench.harness.runner import run_episode

        if self.task is None or self.task.task_id != task_id:
            if self.task is not None:
                self.task.close()
            self.task = self.suite.task(task_id)
        return run_episode(self.spec, self.task, init_index, self.policy,
                           Path(video_dir) if video_dir else None)


def plan_blocks(todo: list[tuple[int, int]], workers: int) -> deque[deque[tuple[int, int]]]:
    """Contiguous per-task blocks: whole tasks when there are enough of them, else each task split evenly."""
    by_task: dict[int, list[tuple[int, int]]] = {}
    for key in todo:
        by_task.setdefault(key[0], []).append(key)
    splits = max(1, math.ceil(workers / len(by_task))) if by_task else 1
    blocks: deque[deque[tuple[int, int]]] = deque()
    for keys in by_task.values():
        size = math.ceil(len(keys) / min(splits, len(keys)))
        blocks.extend(deque(keys[i : i + size]) for i in range(0, len(keys), size))
    return blocks


def execute_ray(spec: RunSpec, recipe: Any, store: RunStore, manifest: dict[str, Any], environment: dict[str, Any],
                options: RayOptions, *, video: bool = False, retry_errors: bool = False,
                progress: Any = None) -> RunResult:
    """Run the store's pending episodes on Ray actors (the caller holds the store, and so its lock)."""
    try:
        import ray
        from ray.exceptions import RayError
    except ImportError:
        raise BenchError("--executor ray needs Ray: pip install 'vla-accel-bench[ray]'") from None

    started_ray = False
    try:
        todo = pending(spec, store, retry_errors, progress)
        if not ray.is_initialized():
            # One CPU per worker, for torch and for OSMesa's llvmpipe too (it starts a thread per core
            # otherwise, and N workers on N cores then fight over them).
            env_vars = {"PYTHONPATH": str(Path(__file__).resolve().parents[2]),
                        "LP_NUM_THREADS": os.environ.get("LP_NUM_THREADS", str(options.threads_per_worker))}
            ray.init(address=options.address, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": env_vars})
            started_ray = True
        actor_cls = ray.remote(num_cpus=options.threads_per_worker, num_gpus=options.gpus_per_worker,
                               max_restarts=-1, max_task_retries=0)(EpisodeWorker)
        n_workers = max(1, min(options.workers, len(todo)))
        actors = [actor_cls.remote(recipe, spec, options.threads_per_worker) for _ in range(n_workers)]
        manifest = {**manifest, "policy": ray.get(actors[0].describe.remote()),
                    "executor": {"kind": "ray", "workers": n_workers, "gpus_per_worker": options.gpus_per_worker}}
        store.write_manifest_once(manifest)
        store.log_invocation({**environment, "executor": "ray", "workers": n_workers})
        video_dir = str(store.dir) if video else None

        blocks = plan_blocks(todo, n_workers)
        queues: dict[int, deque[tuple[int, int]]] = {i: deque() for i in range(n_workers)}
        retries: dict[tuple[int, int], int] = {}
        in_flight: dict[Any, tuple[int, tuple[int, int] | None]] = {}  # key None: a probe of a restarting actor
        ran = 0

        def dispatch(i: int) -> None:
            if not queues[i] and blocks:
                queues[i] = blocks.popleft()
            if queues[i]:
                key = queues[i].popleft()
                in_flight[actors[i].run.remote(key[0], key[1], video_dir)] = (i, key)

        for i in range(n_workers):
            dispatch(i)

        def probe(i: int) -> None:
            in_flight[actors[i].pid.remote()] = (i, None)

        with keep_steps_on_interrupt(store):
            while in_flight:
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
                raise_if_interrupted()
                if not ready:
                    continue
                i, key = in_flight.pop(ready[0])
                try:
                    result = ray.get(ready[0])
                except RayError as exc:
                    if key is None:  # still restarting: ask again shortly
                        time.sleep(0.5)
                        probe(i)
                        continue
                    retries[key] = retries.get(key, 0) + 1
                    if retries[key] <= options.max_retries:
                        blocks.appendleft(deque([key, *queues[i]]))  # retry it (and the rest of its block) next
                        queues[i] = deque()
                        probe(i)  # Ray restarts the actor; it takes work again once it answers
                        continue
                    result = (_worker_died(key, retries[key], exc), [])
                    probe(i)
                if key is None:
                    dispatch(i)
                    continue
                record, steps = result
                store.append_episode(record, steps)
                ran += 1
                if progress is not None:
                    progress.advance(record)
                dispatch(i)
        return finish(spec, store, ran)
    finally:
        if started_ray:
            ray.shutdown()


def _worker_died(key: tuple[int, int], attempts: int, exc: Exception) -> dict[str, Any]:
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return {"key": episode_key(*key), "task_id": key[0], "init_state_index": key[1], "task_name": "", "success": False,
            "steps": 0, "first_success_step": None, "status": "error",
            "message": f"worker died {attempts} times: {message}", "wall_time_s": 0.0, "env_time_s": 0.0,
            "policy_time_s": 0.0, "harness_time_s": 0.0, "actions_sha1": "", "summary": {}}
