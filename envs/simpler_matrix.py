"""SIMPLER's Google-robot evaluation matrices and their aggregation, as data (no simulator needed).

From SimplerEnv's ``scripts/rt1_*_{visual_matching,variant_agg}.sh`` (= CogACT's ``sim_cogact/scripts/cogact_*``) and
``tools/calc_metrics_evaluation_videos.py`` (reference notes: envs-libero-simpler.md §3.5–3.8). Each script line
becomes a ``Variant``; each (robot pose, object placement) of its loops an ``Episode``. Scores are means of
variant means (unweighted), camera variants of Variant Aggregation are run but not counted, and the Google-robot
score is the mean of the four task scores.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

URDFS = ("None", "recolor_tabletop_visual_matching_1", "recolor_tabletop_visual_matching_2",
         "recolor_cabinet_visual_matching_1")
COKE_ORIENTATIONS = {"horizontal": "lr_switch", "vertical": "laid_vertically", "standing": "upright"}
DRAWERS = ("Top", "Middle", "Bottom")
OVERLAYS = "./ManiSkill2_real2sim/data/real_inpainting/"  # relative to the SimplerEnv root, as the scripts pass it
# Visual-matching drawer stations: overlay → robot (x, y, yaw).
DRAWER_POSES = {
    "a0": (0.644, -0.179, -0.03), "a1": (0.765, -0.182, -0.02), "a2": (0.889, -0.203, -0.06),
    "b0": (0.652, 0.009, 0.0), "b1": (0.752, 0.009, 0.0), "b2": (0.851, 0.035, 0.0),
    "c0": (0.665, 0.224, 0.0), "c1": (0.765, 0.222, -0.025), "c2": (0.865, 0.222, -0.025),
}
DRAWER_VM_KWARGS = {"station_name": "mk_station_recolor", "light_mode": "simple", "disable_bad_material": True}


@dataclass(frozen=True)
class Episode:
    """One env build + reset of the matrix (a new env per episode, as the scripts do)."""

    env_id: str
    scene: str
    max_steps: int
    robot: tuple[float, float, float]  # x, y, yaw (rpy (0, 0, yaw) composed with the scripts' quat centre 0 0 0 1)
    obj: tuple[str, Any]  # ("xy", (x, y)) | ("episode", k)
    kwargs: dict[str, Any] = field(default_factory=dict)  # additional env build kwargs
    overlay: str | None = None
    group: str = ""  # coke can: orientation; drawer: open/close; else the task
    variant: str = ""  # the unit of "mean of variant means"
    counted: bool = True  # camera variants of VA are run, not aggregated


def _urdf(label: str) -> str | None:
    return None if label == "None" else label  # the scripts' bare None: the default (un-recoloured) textures


def _grid(xs: Iterable[float], ys: Iterable[float]) -> list[tuple[str, Any]]:
    return [("xy", (round(float(x), 6), round(float(y), 6))) for x, y in itertools.product(xs, ys)]


COKE_GRID = _grid(np.linspace(-0.35, -0.12, 5), np.linspace(-0.02, 0.42, 5))
APPLE_GRID = _grid(np.linspace(-0.08, -0.02, 3), np.linspace(-0.02, 0.08, 3))


def _episodes(variant: str, group: str, env_id: str, scene: str, max_steps: int, robots, objs, *, counted=True,
              overlay=None, **kwargs) -> list[Episode]:
    return [Episode(env_id, scene, max_steps, r, o, dict(kwargs), overlay, group, variant, counted)
            for r, o in itertools.product(robots, objs)]


def coke_can(visual_matching: bool) -> list[Episode]:
    out: list[Episode] = []
    robot = [(0.35, 0.20, 0.0)]
    env, scene = "GraspSingleOpenedCokeCanInScene-v0", "google_pick_coke_can_1_v4"
    for orientation, flag in COKE_ORIENTATIONS.items():
        if visual_matching:
            for urdf in URDFS:
                out += _episodes(urdf, orientation, env, scene, 80, robot, COKE_GRID,
                                 overlay=OVERLAYS + "google_coke_can_real_eval_1.png", urdf_version=_urdf(urdf), **{flag: True})
            continue
        variants = [("base", env, scene, {}), ("table_cabinet1", env, "Baked_sc1_staging_objaverse_cabinet1_h870", {}),
                    ("table_cabinet2", env, "Baked_sc1_staging_objaverse_cabinet2_h870", {}),
                    ("distractors", "GraspSingleOpenedCokeCanDistractorInScene-v0", scene, {}),
                    ("distractors_more", "GraspSingleOpenedCokeCanDistractorInScene-v0", scene,
                     {"distractor_config": "more"}),
                    ("background_1", env, "google_pick_coke_can_1_v4_alt_background", {}),
                    ("background_2", env, "google_pick_coke_can_1_v4_alt_background_2", {}),
                    ("darker", env, scene, {"slightly_darker_lighting": True}),
                    ("brighter", env, scene, {"slightly_brighter_lighting": True}),
                    ("camera_1", "GraspSingleOpenedCokeCanAltGoogleCameraInScene-v0", scene, {}),
                    ("camera_2", "GraspSingleOpenedCokeCanAltGoogleCamera2InScene-v0", scene, {})]
        for name, env_id, scene_name, kw in variants:
            out += _episodes(name, orientation, env_id, scene_name, 80, robot, COKE_GRID,
                             counted=not name.startswith("camera"), **kw, **{flag: True})
    return out


def move_near(visual_matching: bool) -> list[Episode]:
    robot, objs = [(0.35, 0.21, -0.09)], [("episode", k) for k in range(60)]
    if visual_matching:
        return [e for urdf in URDFS for e in _episodes(
            urdf, "move_near", "MoveNearGoogleBakedTexInScene-v0", "google_pick_coke_can_1_v4", 80, robot, objs,
            overlay=OVERLAYS + "google_move_near_real_eval_1.png", urdf_version=_urdf(urdf))]
    env, scene = "MoveNearGoogleInScene-v0", "google_pick_coke_can_1_v4"
    variants = [("base", env, scene, {}), ("no_distractor", env, scene, {"no_distractor": True}),
                ("background_1", env, "google_pick_coke_can_1_v4_alt_background", {}),
                ("background_2", env, "google_pick_coke_can_1_v4_alt_background_2", {}),
                ("darker", env, scene, {"slightly_darker_lighting": True}),
                ("brighter", env, scene, {"slightly_brighter_lighting": True}),
                ("table_cabinet1", env, "Baked_sc1_staging_objaverse_cabinet1_h870", {}),
                ("table_cabinet2", env, "Baked_sc1_staging_objaverse_cabinet2_h870", {}),
                ("camera_1", "MoveNearAltGoogleCameraInScene-v0", scene, {}),
                ("camera_2", "MoveNearAltGoogleCamera2InScene-v0", scene, {})]
    return [e for name, env_id, scene_name, kw in variants for e in _episodes(
        name, "move_near", env_id, scene_name, 80, robot, objs, counted=not name.startswith("camera"), **kw)]


# Variant aggregation for the drawer tasks: 7 scene variants, all ray-traced (shader_dir=rt).
DRAWER_VA = [("base", "frl_apartment_stage_simple", {}), ("background_bedroom", "modern_bedroom_no_roof", {}),
             ("background_office", "modern_office_no_roof", {}),
             ("brighter", "frl_apartment_stage_simple", {"light_mode": "brighter"}),
             ("darker", "frl_apartment_stage_simple", {"light_mode": "darker"}),
             ("station_2", "frl_apartment_stage_simple", {"station_name": "mk_station2"}),
             ("station_3", "frl_apartment_stage_simple", {"station_name": "mk_station3"})]


def drawer(visual_matching: bool) -> list[Episode]:
    envs = [(f"{verb}{d}DrawerCustomInScene-v0", verb.lower()) for verb in ("Open", "Close") for d in DRAWERS]
    out: list[Episode] = []
    for env_id, group in envs:
        if visual_matching:
            for urdf, (station, pose) in itertools.product(URDFS, DRAWER_POSES.items()):
                out += _episodes(urdf, group, env_id, "dummy_drawer", 113, [pose], [("xy", (0.0, 0.0))],
                                 overlay=f"{OVERLAYS}open_drawer_{station}.png", urdf_version=_urdf(urdf), shader_dir="rt",
                                 **DRAWER_VM_KWARGS)
            continue
        robots = [(round(float(x), 6), round(float(y), 6), 0.0)
                  for x, y in itertools.product(np.linspace(0.65, 0.85, 3), np.linspace(-0.2, 0.2, 3))]
        for name, scene, kw in DRAWER_VA:
            out += _episodes(name, group, env_id, scene, 113, robots, [("xy", (0.0, 0.0))], shader_dir="rt", **kw)
    return out


def apple_in_drawer(visual_matching: bool) -> list[Episode]:
    env = "PlaceIntoClosedTopDrawerCustomInScene-v0"  # the middle/bottom envs are commented out in both repos
    out: list[Episode] = []
    if visual_matching:
        for urdf, station in itertools.product(URDFS, ("a0", "b0", "c0")):
            out += _episodes(urdf, "apple", env, "dummy_drawer", 200, [DRAWER_POSES[station]], APPLE_GRID,
                             overlay=f"{OVERLAYS}open_drawer_{station}.png", urdf_version=_urdf(urdf), shader_dir="rt",
                             model_ids="baked_apple_v2", **DRAWER_VM_KWARGS)
        return out
    robots = [(0.65, round(float(y), 6), 0.0) for y in np.linspace(-0.2, 0.2, 3)]
    for name, scene, kw in DRAWER_VA:
        out += _episodes(name, "apple", env, scene, 200, robots, APPLE_GRID, shader_dir="rt", model_ids="apple", **kw)
    return out


TASKS = (("pick_coke_can", coke_can), ("move_near", move_near), ("drawer", drawer), ("apple_in_drawer", apple_in_drawer))
MATRICES = {"simpler_google_vm": True, "simpler_google_va": False}  # suite → visual matching?


def matrix(suite: str) -> list[tuple[str, list[Episode]]]:
    """The suite's tasks in order, each with its episodes."""
    vm = MATRICES[suite]
    return [(name, build(vm)) for name, build in TASKS]


def _mean_of_cells(rows: list[tuple[Episode, bool]], cell) -> float | None:
    cells: dict[Any, list[bool]] = defaultdict(list)
    for ep, ok in rows:
        if ep.counted:
            cells[cell(ep)].append(ok)
    return float(np.mean([np.mean(v) for v in cells.values()])) if cells else None


def task_score(task: str, rows: list[tuple[Episode, bool]]) -> float | None:
    """One task's score from (episode, success) pairs, by the reference's aggregation.

    - pick_coke_can: per orientation, the mean over its variants; then the mean over the orientations;
    - drawer: ``open`` = mean over (drawer env × variant) cells, ``close`` likewise; then mean(open, close);
    - move_near, apple_in_drawer: the mean over variants.
    """
    groups: dict[str, list[tuple[Episode, bool]]] = defaultdict(list)
    for ep, ok in rows:
        groups[ep.group].append((ep, ok))
    if task == "drawer":
        parts = [_mean_of_cells(g, lambda e: (e.variant, e.env_id)) for g in groups.values()]
    else:
        parts = [_mean_of_cells(g, lambda e: e.variant) for g in groups.values()]
    parts = [p for p in parts if p is not None]
    return float(np.mean(parts)) if parts else None


def aggregate(suite: str, results: dict[tuple[int, int], bool]) -> dict[str, float | None]:
    """``results``: (task id, episode index) → final-step success. Per-task scores and ``overall`` = their mean
    (``None`` where a task has no counted episode yet; ``overall`` only when all four have one)."""
    scores: dict[str, float | None] = {}
    for task_id, (name, episodes) in enumerate(matrix(suite)):
        rows = [(episodes[i], ok) for (t, i), ok in results.items() if t == task_id]
        scores[name] = task_score(name, rows)
    values = list(scores.values())
    scores["overall"] = float(np.mean(values)) if all(v is not None for v in values) else None
    return scores


def final_step_success(infos: list[dict[str, Any]]) -> bool:
    """The evaluator's semantics: ``success = done`` is overwritten at every step, so the last info decides
    (the coke-can env folds its episode statistics — lifted on ≥ 5 steps — into that flag itself)."""
    return bool(infos[-1]["success"]) if infos else False
