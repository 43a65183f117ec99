"""SIMPLER without the simulator (issue 19): the evaluation matrices against the docs' table, the reference's
aggregation, final-step success on recorded info dicts, and the episode loop on a replaying stand-in env."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from envs.simpler_matrix import aggregate, final_step_success, matrix, task_score

DOCS = Path(__file__).resolve().parents[1] / "docs" / "simpler.md"


def documented_counts() -> dict[str, dict[str, tuple[int, int]]]:
    """docs/simpler.md's matrix table: suite → task → (episodes run, episodes counted)."""
    out: dict = {}
    for line in DOCS.read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("simpler_google_"):
            out.setdefault(cells[0], {})[cells[1]] = (int(cells[2]), int(cells[3]))
    return out


def test_matrices_match_the_table_in_the_docs():
    table = documented_counts()
    assert set(table) == {"simpler_google_vm", "simpler_google_va"}
    for suite, tasks in table.items():
        assert {name: (len(eps), sum(e.counted for e in eps)) for name, eps in matrix(suite)} == tasks
    assert table["simpler_google_va"]["pick_coke_can"] == (825, 675)  # the reference notes' totals


def test_visual_matching_variants_and_limits():
    tasks = dict(matrix("simpler_google_vm"))
    coke = tasks["pick_coke_can"]
    assert Counter(e.group for e in coke) == {"horizontal": 100, "vertical": 100, "standing": 100}
    assert {e.kwargs["urdf_version"] for e in coke} == {None, "recolor_tabletop_visual_matching_1",
                                                        "recolor_tabletop_visual_matching_2", "recolor_cabinet_visual_matching_1"}
    assert {e.max_steps for e in coke} == {80} and {e.robot for e in coke} == {(0.35, 0.20, 0.0)}
    assert {e.max_steps for e in tasks["drawer"]} == {113} and {e.max_steps for e in tasks["apple_in_drawer"]} == {200}
    assert Counter(e.env_id for e in tasks["drawer"])["OpenTopDrawerCustomInScene-v0"] == 36  # 9 stations × 4
    assert {e.obj for e in tasks["move_near"]} == {("episode", k) for k in range(60)}
    assert all(e.kwargs["model_ids"] == "baked_apple_v2" for e in tasks["apple_in_drawer"])


def rows_with(episodes, rate_of):
    """Deterministic successes: within each (group, variant, env) cell, the first round(rate·n) episodes succeed."""
    cells: dict = {}
    for e in episodes:
        cells.setdefault((e.group, e.variant, e.env_id), []).append(e)
    rows = []
    for key, eps in cells.items():
        k = round(rate_of(*key) * len(eps))
        rows += [(e, i < k) for i, e in enumerate(eps)]
    return rows


def test_coke_can_va_is_the_mean_over_orientations_of_the_mean_over_counted_variants():
    eps = dict(matrix("simpler_google_va"))["pick_coke_can"]
    rates = {"horizontal": 0.8, "vertical": 0.4, "standing": 1.0}
    # camera variants fail everywhere: they must not count
    rows = rows_with(eps, lambda g, v, env: 0.0 if v.startswith("camera") else rates[g])
    assert task_score("pick_coke_can", rows) == pytest.approx(np.mean(list(rates.values())))


def test_drawer_is_the_mean_of_open_and_close_over_drawer_by_variant_cells():
    eps = dict(matrix("simpler_google_vm"))["drawer"]
    rows = rows_with(eps, lambda g, v, env: (1.0 if "Top" in env else 0.0) if g == "open" else 5 / 9)
    assert task_score("drawer", rows) == pytest.approx(np.mean([1 / 3, 5 / 9]))


def test_overall_is_the_mean_of_the_four_task_scores_and_waits_for_all():
    suite = "simpler_google_vm"
    rates = [0.913, 0.85, 0.718, 0.509]  # CogACT's paper per-task VM numbers → 74.8 overall
    results = {}
    for task_id, (_, eps) in enumerate(matrix(suite)):
        for e, ok in rows_with(eps, lambda g, v, env, r=rates[task_id]: r):
            results[(task_id, eps.index(e))] = ok
    scores = aggregate(suite, results)
    assert scores["overall"] == pytest.approx(np.mean([scores[n] for n, _ in matrix(suite)]))
    assert abs(scores["overall"] - 0.748) < 0.01
    partial = {k: v for k, v in results.items() if k[0] != 3}
    assert aggregate(suite, partial)["overall"] is None and aggregate(suite, partial)["apple_in_drawer"] is None


def test_final_step_success_on_recorded_info_dicts():
    lifted_then_dropped = [{"success": False, "lifted_object": False}, {"success": True, "lifted_object": True},
                           {"success": False, "lifted_object": False}]
    assert not final_step_success(lifted_then_dropped)  # the evaluator keeps the last value
    assert final_step_success([{"success": False}, {"success": True}])
    assert not final_step_success([])


def test_robot_pose_quaternion_reproduces_the_wxyz_quirk():
    from envs.simpler import reset_options, yaw_quat

    np.testing.assert_allclose(yaw_quat(0.0), [0, 0, 0, 1])  # "0 0 0 1" read as wxyz: 180° about z
    q = yaw_quat(-0.09)  # rpy (0,0,-0.09) ∘ 180° about z = a rotation by π − 0.09 about z
    assert math.isclose(2 * math.atan2(q[3], q[0]), math.pi - 0.09, rel_tol=1e-9) and q[1] == q[2] == 0
    ep = dict(matrix("simpler_google_vm"))["move_near"][7]
    opts = reset_options(ep)
    assert opts["obj_init_options"] == {"episode_id": 7} and opts["robot_init_options"]["init_xy"] == [0.35, 0.21]


class ReplayEnv:
    """Stands in for a ManiSkill2 env: replays recorded info dicts; the instruction changes at step 2."""

    def __init__(self, infos, **build):
        self.infos, self.build, self.t = infos, build, 0

    def reset(self, options):
        self.options = options
        return self.obs(), {}

    def obs(self):
        return {"image": {"overhead_camera": {"rgb": np.full((512, 640, 3), self.t, dtype=np.uint8)}}}

    def step(self, action):
        info = self.infos[self.t]
        self.t += 1
        return self.obs(), 0.0, info["success"], self.t >= len(self.infos), info

    def get_language_instruction(self):
        return "open top drawer" if self.t < 2 else "place apple into top drawer"

    def close(self):
        pass


class CountingPolicy:
    name = "counting"

    def __init__(self):
        self.resets = []

    def reset(self, instruction, episode_seed):
        self.resets.append(instruction)

    def act(self, obs):
        from bench.harness.policy import StepResult

        assert obs["image"].shape == (512, 640, 3)
        return StepResult(np.zeros(7), {})


def test_episode_runs_to_the_time_limit_and_scores_the_last_step(monkeypatch):
    import gymnasium

    from bench.harness.rollout import rollout
    from envs.simpler import SimplerSuite

    infos = [{"success": s} for s in (False, True, True, False, True)]
    built = []
    monkeypatch.setattr(gymnasium, "make", lambda env_id, **kw: built.append((env_id, kw)) or ReplayEnv(infos, **kw))
    suite = SimplerSuite("simpler_google_vm", check=False)
    task = suite.task(3)  # apple in drawer: 200-step limit; the stand-in ends at 5 steps
    ep = task.episodes[0]
    task.episodes = [type(ep)(**{**ep.__dict__, "max_steps": 5})]
    policy = CountingPolicy()
    record = rollout(task, 0, policy, max_steps=suite.protocol.max_steps, episode_seed=0)
    assert record.status == "ok", record.message
    assert record.steps == 5 and record.success  # did not stop at the first success; the last flag is True
    assert policy.resets == ["open top drawer", "place apple into top drawer"]
    env_id, kw = built[0]
    assert env_id == "PlaceIntoClosedTopDrawerCustomInScene-v0" and kw["robot"] == "google_robot_static"
    assert kw["control_freq"] == 3 and kw["sim_freq"] == 513 and kw["shader_dir"] == "rt"
    infos[-1] = {"success": False}
    assert not rollout(task, 0, CountingPolicy(), max_steps=200, episode_seed=0).success


def test_table3_success_is_the_aggregate_not_the_episode_rate():
    from bench.analysis.paper_report import Cell, cell_for

    run = {"episodes": 864, "aggregate_success": 0.5, "success_rate": 0.9, "ci95_low": 0.8, "ci95_high": 0.95}
    cell = cell_for({("cogact-base", "lac", "simpler_google_vm"): run}, "cogact-base", "lac",
                    {"suite": "simpler_google_vm", "metric": "success"})
    assert cell == Cell(0.5, n=864) and cell.text("success") == "50.0 n=864"


def test_table3_regenerated_from_simpler_runs(tmp_path):
    """Fake finished runs of the VM suite (records as the store writes them) → `bench report --paper lac`'s Table 3."""
    import json

    import pandas as pd

    from bench.analysis.paper_report import write_paper_tables

    suite, rates = "simpler_google_vm", [0.9, 0.8, 0.7, 0.5]
    tasks = matrix(suite)
    expected = {}
    for method, shift in (("baseline", 0.0), ("lac", -0.1)):
        d = tmp_path / "runs" / suite / "cogact-base" / method / f"h{method}"
        d.mkdir(parents=True)
        cap = {str(t): len(eps) for t, (_, eps) in enumerate(tasks)}
        spec = {"suite": suite, "policy": "cogact-base", "method": method, "tasks": [0, 1, 2, 3],
                "episodes_per_task": 1000, "protocol": {"episodes_cap": cap}}
        (d / "manifest.json").write_text(json.dumps({"spec": spec, "run_hash": d.name,
                                                     "policy": {"device": "cuda", "dtype": "bf16"}}))
        results = {}
        with open(d / "episodes.jsonl", "w") as f:
            for task_id, (_, eps) in enumerate(tasks):
                for e, ok in rows_with(eps, lambda g, v, env, r=rates[task_id] + shift: r):
                    i = eps.index(e)
                    results[(task_id, i)] = ok
                    summary = {"paper_prefill_macs_mean": 1.8e12, "time_prefill_s_median": 0.05,
                               "time_step_s_median": 0.2, "macs_total_mean": 2e12}
                    f.write(json.dumps({"key": f"{task_id}:{i}", "task_id": task_id, "init_state_index": i,
                                        "success": ok, "status": "ok", "steps": e.max_steps, "summary": summary}) + "\n")
        expected[method] = aggregate(suite, results)["overall"]
    write_paper_tables("lac", [tmp_path / "runs"], tmp_path / "out", None, None)
    t3 = pd.read_csv(tmp_path / "out" / "lac_table3.csv")
    assert t3.loc[t3.method == "CogACT", "VM success (ours)"].item() == f"{100 * expected['baseline']:.1f} n=864"
    assert t3.loc[t3.method == "LAC", "VM success (ours)"].item() == f"{100 * expected['lac']:.1f} n=864"
    assert t3.loc[t3.method == "VLA-Cache", "VM success (ours)"].item() == "—"


def test_episodes_per_task_is_capped_by_each_tasks_matrix():
    from bench.harness.spec import planned_keys

    spec = {"tasks": [0, 3], "episodes_per_task": 200, "protocol": {"episodes_cap": {"0": 300, "3": 108}}}
    keys = planned_keys(spec)
    assert len(keys) == 200 + 108 and (3, 107) in keys and (3, 108) not in keys
    assert planned_keys({"tasks": [1], "episodes_per_task": 2}) == [(1, 0), (1, 1)]  # LIBERO: no cap
