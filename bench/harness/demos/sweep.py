"""``bench demos expert``: the scripted expert's success on the official init states, per task.

Rendering is off and resets are soft (``hard_reset=False``: the probe saw identical outcomes, ~2 s saved per
episode). Results are appended to ``<out>/<suite>.jsonl`` one episode per line, so a rerun resumes (a torn last line
from a crash is ignored and that episode reruns).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from bench.harness.demos.expert_rollout import run_expert
from bench.harness.store import read_jsonl
from envs.libero import LiberoSuite


def sweep(suite: str, tasks: list[int] | None, init_states: int, out: Path,
          progress: Callable[[str], None] = print) -> Path:
    libero = LiberoSuite(suite)
    path = out / f"{suite}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    seen = {(r["task_id"], r["init_index"]) for r in read_jsonl(path)}
    with path.open("a") as f:
        for task_id in tasks if tasks is not None else libero.task_ids():
            task = libero.task(task_id, cameras=(), hard_reset=False)
            for i in range(min(init_states, task.n_init_states)):
                if (task_id, i) in seen:
                    continue
                t0 = time.perf_counter()
                ep = run_expert(task, i)
                rec = {"task_id": task_id, "task": task.name, "init_index": i, "success": ep.success,
                       "steps": ep.steps, "error": ep.error, "wall_s": round(time.perf_counter() - t0, 2)}
                f.write(json.dumps(rec) + "\n")
                f.flush()
                os.fsync(f.fileno())
                progress(f"{suite} task {task_id} init {i}: {'success' if ep.success else 'fail'} in {ep.steps} steps")
            task.close()
    return path
