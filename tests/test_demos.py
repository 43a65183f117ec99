"""Scripted expert and demo files, on the real LIBERO simulator."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from bench.harness.demos.expert_rollout import run_expert
from bench.harness.demos.generate import generate, task_file
from bench.harness.train.bc_data import build_dataset
from envs.libero import LiberoSuite
from envs.libero_hdf5 import load_demos
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


def _bowls(task) -> dict[str, np.ndarray]:
    problem = task.env.env
    return {n: problem.sim.data.body_xpos[b].copy() for n, b in problem.obj_body_id.items() if "bowl" in n}


def test_site_corrected_placement_puts_the_drawer_bowl_in_the_drawer():
    """libero_spatial task 4: LIBERO's own fresh reset starts the bowl meant for the cabinet's top drawer ~0.9 m
    above it (the fixture position counted twice); the corrected placement starts it at the drawer's site, as the
    official init states do (bowl bottom at the site), and the cabinet-top bowl 4.5 cm above that site."""
    task = LiberoSuite("libero_spatial").task(4, cameras=(), hard_reset=False)
    sim = lambda: task.env.env.sim  # noqa: E731
    task.reset_random(400_000, placement="libero")
    drawer = sim().data.get_site_xpos("wooden_cabinet_1_top_region").copy()
    assert _bowls(task)["akita_black_bowl_1"][2] > drawer[2] + 0.5
    task.reset_random(400_000)
    bowls = _bowls(task)
    drawer, top = (sim().data.get_site_xpos(s).copy() for s in ("wooden_cabinet_1_top_region", "wooden_cabinet_1_top_side"))
    assert np.abs(bowls["akita_black_bowl_1"] - drawer)[:2].max() < 0.03
    assert bowls["akita_black_bowl_1"][2] == pytest.approx(drawer[2] + 0.06, abs=1e-3)
    assert np.abs(bowls["akita_black_bowl_2"] - top)[:2].max() < 0.07
    assert bowls["akita_black_bowl_2"][2] == pytest.approx(top[2] + 0.105, abs=1e-3)
    first = task.env.env.sim.get_state().flatten()
    task.reset_random(400_000)
    assert np.array_equal(task.env.env.sim.get_state().flatten(), first)  # seeded: the same scene again
    task.close()


def test_site_corrected_placement_leaves_suites_without_fixture_regions_alone():
    """libero_object has no object in or on a fixture region: both placements give the same scene, which is why its
    packs' seeds stand for either."""
    task = LiberoSuite("libero_object").task(2, cameras=(), hard_reset=False)
    task.reset_random(200_003, placement="libero")
    raw = task.env.env.sim.get_state().flatten()
    task.reset_random(200_003)
    assert np.array_equal(task.env.env.sim.get_state().flatten(), raw)
    task.close()


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
    from bench.core.models.presets import tiny
    from bench.core.models.tokenizer import build_word_tokenizer

    cfg = tiny()
    tok = build_word_tokenizer(demos[0].instruction.split(), cfg.n_text_vocab, cfg.n_action_bins)
    data = build_dataset([str(tmp_path)], tok, cfg.n_text_vocab, log=lambda m: None)
    assert len(data) == T and data.images.shape[1:] == (224, 224, 3) and "libero_object" in data.stats
    # rerun: the demo is already there, nothing new is written
    assert generate("libero_object", [1], 1, tmp_path, progress=lambda m: None) == {1: (1, 0)}
    assert task_file(tmp_path, "libero_object", path.name.removesuffix("_demo.hdf5")) == path
    # a pack records each demo's seed; a machine holding only the pack continues it instead of remaking it
    from bench.harness.train.demo_frames import read_hdf5_demos

    packed_demo = read_hdf5_demos(tmp_path, log=lambda m: None).demos[0]
    assert (packed_demo["seed"], packed_demo["placement"]) == (100_000, "site-corrected")
    packed = frozenset({100_000, 100_001, 5})  # seed 5 is task 0's: it does not count for task 1
    assert generate("libero_object", [1], 2, tmp_path / "new", packed=packed, progress=lambda m: None) == {1: (2, 0)}
    assert all(not list(load_demos(f)) for f in (tmp_path / "new").rglob("*.hdf5"))


def test_demos_cli_rejects_a_non_libero_suite():
    r = run_bench("demos", "expert", "--suite", "simpler_widowx")
    assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout



def _settled(suite: str, task_id: int, init_index: int):
    task = LiberoSuite(suite).task(task_id, cameras=(), hard_reset=False)
    task.reset(init_index)
    for _ in range(task.protocol.wait_steps):
        task.step(np.asarray(task.protocol.wait_action))
    return task


def test_an_expert_resumed_from_the_scene_every_step_solves_the_task():
    """Stateless use (a fresh expert per step, phase from the scene) — what DAgger labels are made of — walks
    through every phase and solves the task like the stateful expert."""
    from envs.expert import ScriptedExpert

    task = _settled("libero_object", 1, 0)
    phases, done = [], False
    for _ in range(task.protocol.max_steps):
        expert = ScriptedExpert(task.env.env)
        phases.append(expert.resume_from_scene())
        _, done = task.step(expert.act())
        if done:
            break
    task.close()
    assert done
    order = list(dict.fromkeys(phases))
    assert order[:7] == ["pregrasp", "descend", "close", "lift", "transport", "lower", "release"]


def test_the_expert_recovers_from_a_dropped_object():
    """Off its own trajectory: grasp and lift, then the gripper opens and the arm wanders (a policy's kind of
    state); an expert resumed from that scene still finishes the task."""
    from envs.expert import ScriptedExpert

    task = _settled("libero_object", 1, 0)
    expert = ScriptedExpert(task.env.env)
    for _ in range(45):
        task.step(expert.act())
    rng = np.random.default_rng(0)
    for _ in range(15):
        task.step(np.append(rng.uniform(-0.5, 0.5, 6) * [1, 1, 1, 0, 0, 0], -1.0))
    expert = ScriptedExpert(task.env.env)
    assert expert.resume_from_scene() in ("pregrasp", "descend")
    done = False
    for _ in range(task.protocol.max_steps - 60):
        _, done = task.step(expert.act())
        if done:
            break
    task.close()
    assert done


def test_dagger_round_writes_labelled_policy_states_that_training_reads(tmp_path, monkeypatch):
    """A short round (protocol cut to 12 steps, takeover at 6) with the embedded policy: one labelled episode in
    a LIBERO-layout file marked dagger, a report row, the expert's takeover, and the BC loader reads it."""
    import dataclasses
    import json

    import envs.libero as libero_mod
    from bench.harness.demos.dagger import dagger_round
    from bench.harness.openvla_policy import load_openvla_policy
    from bench.harness.train.bc_data import read_demo_frames
    from methods.baseline import Baseline

    real_task = libero_mod.LiberoSuite.task

    def short_task(self, task_id, **kw):
        t = real_task(self, task_id, **kw)
        t.protocol = dataclasses.replace(t.protocol, max_steps=12)
        return t

    monkeypatch.setattr(libero_mod.LiberoSuite, "task", short_task)
    policy = load_openvla_policy("tiny-openvla", None, Baseline(), "libero_object")
    rows = dagger_round(policy, "libero_object", [1], 1, tmp_path, takeover=6, progress=lambda m: None)
    assert len(rows) == 1 and rows[0]["steps"] == 12 and rows[0]["recovery"] is False  # 6 steps cannot solve it
    assert sum(rows[0]["label_phases"].values()) == 12
    path = next((tmp_path / "libero_object").glob("*_demo.hdf5"))
    with h5py.File(path, "r") as f:
        g = f["data/demo_0"]
        assert g.attrs["dagger"] == 1 and g["actions"].shape == (12, 7) and g["obs/agentview_rgb"].shape[0] == 12
    assert json.loads((tmp_path / "libero_object_dagger.jsonl").read_text())["seed"] == 701_000
    frames = read_demo_frames([str(tmp_path / "libero_object")], log=lambda m: None)
    assert len(frames) == 12 and frames.frames.shape[1:] == (224, 224, 3)
    # resumable: the episode is not collected again
    assert dagger_round(policy, "libero_object", [1], 1, tmp_path, takeover=6, progress=lambda m: None) == []
