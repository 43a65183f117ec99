"""``bench demos generate``: successful scripted-expert demos per task, appended to LIBERO-layout files.

Demos start from fresh placements sampled from the task's BDDL regions (seed = task_id·100000 + k; objects in or on
a fixture's region placed where LIBERO meant them to be, ``envs/libero_placement.py``), never from the 50
official init states used for evaluation. Resume: seeds already written (or recorded as failed)
are skipped, so a rerun continues where a crash or Ctrl-C stopped; seeds already in a committed pack
(``--packed``) are skipped and counted, so a new machine continues a pack instead of remaking it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from bench.harness.demos.expert_rollout import run_expert
from envs.libero import CAMERA, LiberoSuite
from envs.libero_hdf5 import append_demo, open_task_file, recorded_seeds

WRIST_CAMERA = "robot0_eye_in_hand"
SEEDS_PER_TASK = 100_000  # demo k of task t is placed with seed t·SEEDS_PER_TASK + k


def task_file(out: Path, suite: str, task_name: str) -> Path:
    return out / suite / f"{task_name}_demo.hdf5"


def generate(suite: str, tasks: list[int] | None, per_task: int, out: Path, noise: float = 0.05,
             wrist: bool = False, max_attempts: int | None = None, packed: frozenset[int] = frozenset(),
             placement: str = "site-corrected", progress: Callable[[str], None] = print) -> dict[int, tuple[int, int]]:
    """Write successful demos until each task has ``per_task``, counting those in the files and the ``packed``
    seeds (demos already in a committed pack, made on an earlier machine, with the same ``placement``: the
    caller filters them); returns {task_id: (demos, failed)}."""
    libero = LiberoSuite(suite)
    cameras = (CAMERA, WRIST_CAMERA) if wrist else (CAMERA,)
    counts = {}
    for task_id in tasks if tasks is not None else libero.task_ids():
        task = libero.task(task_id, cameras=cameras, hard_reset=False)
        path = task_file(out, suite, task.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        env_args = {"env_name": task.name, "bddl_file": task.bddl_file, "camera_names": list(cameras),
                    "camera_size": task.protocol.image_size, "control_freq": 20, "controller": "OSC_POSE",
                    "suite": suite, "task_id": task_id}
        with open_task_file(path, task.instruction, env_args, task.bddl_file) as f:
            done = recorded_seeds(f) | {s for s in packed if s // SEEDS_PER_TASK == task_id}
            failed = set(json.loads(f["data"].attrs.get("failed_seeds", "[]")))
        k = 0
        while len(done) < per_task and (max_attempts is None or k < max_attempts):
            seed = task_id * SEEDS_PER_TASK + k
            k += 1
            if seed in done or seed in failed:
                continue
            ep = run_expert(task, None, noise=noise, seed=seed, record=True, placement=placement)
            # the file is open only while one demo is appended, so a kill mid-rollout cannot corrupt it
            with open_task_file(path, task.instruction, env_args, task.bddl_file) as f:
                if ep.success:
                    append_demo(f, ep, seed, noise, placement)
                    done.add(seed)
                else:
                    failed.add(seed)
                    f["data"].attrs["failed_seeds"] = json.dumps(sorted(failed))
            progress(f"{suite} task {task_id}: {len(done)}/{per_task} demos ({len(failed)} failed attempts)")
        counts[task_id] = (len(done), len(failed))
        task.close()
    return counts
