"""Articulation skills of the scripted expert: turning a stove knob on (``turnon`` goal predicates).

The LIBERO stove knob is a hinge about world +z with a bar-shaped handle on a disc; the stove counts as on
at ``qpos ≥ 0.5`` rad (``FlatStove.turn_on``), positive = counter-clockwise seen from above. The skill
grasps the handle bar top-down across its width with the grip site on the hinge axis, twists the hand
counter-clockwise (yaw ramps 0.1 rad per step) until the joint passes the threshold plus a margin, then
releases and retreats. Facts: ``shared/reference/libero-expert-notes.md``; choices: ``docs/demos.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.expert_geometry import body_boxes

TURN_ON_QPOS = 0.5  # FlatStove default_turnon_ranges minimum (rad)
TWIST_MARGIN = 0.25  # turn this far past the threshold so the knob does not spring back under it
TWIST_RATE = 0.1  # rad of commanded yaw per step


@dataclass
class TurnOn:
    fixture: str
    phase: str = "pregrasp"
    timer: int = 0
    yaw: float = 0.0
    grip: np.ndarray | None = None
    joint: int = -1  # the knob's hinge, found on the first step
    twist: float = 0.0

    def act(self, expert) -> np.ndarray:
        sim = expert.sim
        if self.grip is None:
            self.joint = _hinge(expert.env, self.fixture)
            self.grip, self.yaw = handle_grasp(sim, self.joint)
        qpos = float(sim.data.qpos[sim.model.jnt_qposadr[self.joint]])
        self.timer += 1
        if self.timer == 1:
            expert.trail.clear()
        action = expert.approach_and_close(self, self.grip, self.yaw, close_steps=10, then="twist")
        if action is not None:
            return action
        above = self.grip + np.array([0, 0, 0.08])
        open_, close = -1.0, 1.0
        if self.phase == "twist":
            self.twist = min(self.twist + TWIST_RATE, np.pi / 2)
            if qpos >= TURN_ON_QPOS + TWIST_MARGIN or self.timer > 40:
                self.phase, self.timer = "release", 0
            return expert._action(self.grip, self.yaw + self.twist, close)
        if self.phase == "release":
            if self.timer > 6:
                self.phase, self.timer = "retreat", 0
            return expert._action(self.grip, self.yaw + self.twist, open_)
        if expert._reached(above, 0.02) or self.timer > 20:
            self.phase = "done"
        return expert._action(above, self.yaw + self.twist, open_)


def _hinge(env, fixture: str) -> int:
    """The fixture's hinge joint id (the stove's knob)."""
    m = env.sim.model
    hinges = [m.joint_name2id(j) for j in env.get_object(fixture).joints if m.jnt_type[m.joint_name2id(j)] == 3]
    if not hinges:
        raise NotImplementedError(f"{fixture} has no hinge joint to turn")
    return hinges[0]


def handle_grasp(sim, joint: int) -> tuple[np.ndarray, float]:
    """Grip-site target and closing-axis yaw for grasping the knob's handle bar across its width.

    The handle is the knob body's collision boxes whose tops are within 2 cm of the highest one; the bar's long
    direction is the larger side of their joint x/y extent, the closing axis is perpendicular to it.
    """
    boxes = [b.corners() for b in body_boxes(sim, int(sim.model.jnt_bodyid[joint]))]
    top = max(c[:, 2].max() for c in boxes)
    handle = np.concatenate([c for c in boxes if c[:, 2].max() > top - 0.02])
    lo, hi = handle.min(0), handle.max(0)
    axis = sim.data.xanchor[joint]
    if hi[0] - lo[0] >= hi[1] - lo[1]:  # bar along x: close along y, centred on the bar's width
        xy, yaw = np.array([axis[0], (lo[1] + hi[1]) / 2]), np.pi / 2
    else:
        xy, yaw = np.array([(lo[0] + hi[0]) / 2, axis[1]]), 0.0
    return np.array([*xy, top - 0.015]), yaw
