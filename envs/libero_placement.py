"""Fresh LIBERO placements with objects in or on a fixture's region put where the BDDL says.

LIBERO's site samplers (``SiteRegionRandomSampler`` and ``InSiteRegionRandomSampler``: ``(On bowl
wooden_cabinet_1_top_side)``, ``(In bowl wooden_cabinet_1_top_region)``, ``(On bowl flat_stove_1_cook_region)``)
compute the object's position as ``fixture_pos + R(fixture_quat) · site_xpos + offset``. That formula wants the
site's position in the fixture's frame, but ``site_xpos`` is its *world* position, so the fixture's position is
counted twice: on libero_spatial the bowl meant for the cabinet's top drawer starts ~0.9 m above it, at a rotated
x/y, falls, bounces off the cabinet and lands on the floor (seed 400000: at x = 1.68 m after 17 steps). 31 of the
36 fresh placements of libero_spatial task 4 could not be solved for that reason, and in every libero_spatial task
with a bowl on the cabinet or the stove, that bowl lay somewhere else.

The official init states do not have the bug: there the object sits at the site's world position plus the
sampler's x/y offset, its bottom at the site (``In``) or at the fixture's ``top_offset`` above it (``On``;
4.5 cm for the cabinet and the stove) — measured on libero_spatial tasks 4 and 9, init states 0–2. The
``site-corrected`` placement reruns LIBERO's own site samplers after its reset (their x/y ranges, rotations and
overlap checks, drawing from the same global RNG), handing them the site's position in the fixture's frame as the
formula wants, and moves those objects there. Suites without site-conditioned objects (libero_object,
libero_goal, libero_10) are left untouched and draw nothing. ``libero`` keeps LIBERO's placement as it is.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

PLACEMENTS = ("site-corrected", "libero")


def correct_site_placements(problem: Any) -> list[str]:
    """Re-place the objects LIBERO's site samplers put in or on a fixture region; returns their names.

    ``problem`` is the robosuite/LIBERO problem env (``OffScreenRenderEnv.env``) just after ``reset()``."""
    composite = problem.conditional_placement_initializer
    if composite is None or not composite.samplers:
        return []
    sim = problem.sim
    conditioned = {obj.name for s in composite.samplers.values() for obj in s.mujoco_objects}
    placed = _current_placements(problem, skip=conditioned)
    moved: list[str] = []
    for sampler, args in zip(composite.samplers.values(), composite.sample_args.values(), strict=True):
        args = dict(args or {})
        site, reference = args["site_name"], args["reference"]
        ref_pos, ref_quat, _ = placed[reference]
        local = _rotation(ref_quat).T @ (sim.data.get_site_xpos(site) - np.asarray(ref_pos))
        sim_view = SimpleNamespace(data=SimpleNamespace(get_site_xpos=lambda _name, v=local: v))
        placed = sampler.sample(sim=sim_view, fixtures=placed, **{"on_top": True, **args})
        for obj in sampler.mujoco_objects:
            pos, quat, _ = placed[obj.name]
            sim.data.set_joint_qpos(obj.joints[-1], np.concatenate([np.asarray(pos), np.asarray(quat)]))
            moved.append(obj.name)
    sim.forward()
    return moved


def _current_placements(problem: Any, skip: set[str]) -> dict[str, tuple[Any, Any, Any]]:
    """(pos, quat wxyz, object) of every fixture and movable object as the reset left them, as LIBERO's samplers
    expect their ``fixtures`` argument; ``skip`` leaves out the objects about to be placed again."""
    sim = problem.sim
    placed = {}
    for name, obj in problem.fixtures_dict.items():
        body = sim.model.body_name2id(obj.root_body)
        placed[name] = (sim.model.body_pos[body].copy(), sim.model.body_quat[body].copy(), obj)
    for name, obj in problem.objects_dict.items():
        if name in skip:
            continue
        qpos = sim.data.get_joint_qpos(obj.joints[-1])
        placed[name] = (qpos[:3].copy(), qpos[3:7].copy(), obj)
    return placed


def _rotation(quat_wxyz: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    w, x, y, z = quat_wxyz
    return Rotation.from_quat([x, y, z, w]).as_matrix()
