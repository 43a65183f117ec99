"""Scripted expert and demo files, on the real LIBERO simulator."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from bench.demos.generate import generate, task_file
from bench.demos.hdf5 import load_demos
from bench.demos.rollout import run_expert
from bench.train.bc_data import build_dataset
from envs.libero import LiberoSuite
from tests.conftest import run_bench


@pytest.mark.parametrize(("suite", "task_id", "init_index"),
                         [("libero_object", 1, 0), ("libero_spatial", 5, 1), ("libero_goal", 7, 3)])
def test_expert_solves_official_init_states(suite, task_id, init_index):
    """Cream cheese (needs the collision-aware grasp), the tilted bowl on the ramekin (rim pinch) and the stove
    knob (``turnon``: grasp the handle bar on the hinge axis and twist).

    Spatial task 5 uses init state 1: init 0 succeeded in 104 steps on the sweep machine but times out on an
    AMD EPYC machine (MuJoCo contacts differ by CPU; inits 1–3 succeed on both, within 2 steps of each other)."""
    task = LiberoSuite(suite).task(task_id, cameras=(), hard_reset=False)
    ep = run_expert(task, init_index)
    task.close()
    assert ep.success and ep.steps < task.protocol.max_steps


def test_generated_demo_has_the_libero_layout_and_resumes(tmp_path):
    counts = generate("libero_object", [1], 1, tmp_path, noise=0.05, progress=lambda m: None)
    assert counts == {1: (1, 0)}
    path = next((tmp_path / "libero_object").glob("*_demo.hdf5"))
    with h5py.File(path, "r") as f:
        demo = f["data/demo_0"]
        T = demo.attrs["num_samples"]
        for key in ("actions", "states", "rewards", "dones", "robot_states", "obs/agentview_rgb", "obs/ee_pos",
                    "obs/ee_ori", "obs/ee_states", "obs/gripper_states", "obs/joint_states"):
            assert demo[key].shape[0] == T, key
        assert demo["obs/agentview_rgb"].shape[1:] == (256, 256, 3) and demo["actions"].shape == (T, 7)
        assert demo["dones"][-1] == 1 and f["data"].attrs["num_demos"] == 1
    demos = list(load_demos(path))
    assert demos[0].instruction == "pick up the cream cheese and place it in the basket"
    assert np.abs(demos[0].actions).max() <= 1.0
    # the training loader reads the same file
    from bench.models.presets import tiny
    from bench.models.tokenizer import build_word_tokenizer

    cfg = tiny()
    tok = build_word_tokenizer(demos[0].instruction.split(), cfg.n_text_vocab, cfg.n_action_bins)
    data = build_dataset([str(tmp_path)], tok, cfg.n_text_vocab, log=lambda m: None)
    assert len(data) == T and data.images.shape[1:] == (224, 224, 3) and "libero_object" in data.stats
    # rerun: the demo is already there, nothing new is written
    assert generate("libero_object", [1], 1, tmp_path, progress=lambda m: None) == {1: (1, 0)}
    assert task_file(tmp_path, "libero_object", path.name.removesuffix("_demo.hdf5")) == path


def test_demos_cli_rejects_a_non_libero_suite():
    r = run_bench("demos", "expert", "--suite", "simpler_widowx")
    assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout

