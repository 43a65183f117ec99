"""Scripted LIBERO expert: solves pick-and-place and stove-knob goals from privileged simulator state.

For each ``in``/``on`` goal predicate of the task's BDDL problem it runs approach → descend → grasp → lift
(sliding out from under overhangs first) → transport → lower → release → retreat, with OSC_POSE delta actions
from a per-axis proportional law (one action unit = 5 cm / 0.5 rad; each axis clipped on its own, which the
probe found essential). A grasp that slips on lifting is retried deeper. ``turnon`` goals use the knob skill
of ``envs/expert_articulation.py`` with the same control law. Deterministic; the demo generator
perturbs the *executed* actions (DART-style) and records the expert's clean ones. ``resume_from_scene`` sets
the phase from the scene instead of the expert's own history, so it can take over (or label, for DAgger) any
state a policy reaches. Facts: ``shared/reference/libero-expert-notes.md``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from envs.expert_articulation import TurnOn
from envs.expert_geometry import Box, Grasp, object_points, obstacle_boxes, plan_grasp

GRIP_SITE = "gripper0_grip_site"
OPEN, CLOSE = -1.0, 1.0


@dataclass
class ExpertEpisode:
    """One expert (or expert-labelled) episode as recorded: what a LIBERO-layout demo file stores."""

    success: bool
    steps: int  # policy steps after the settle steps
    actions: list[np.ndarray] = field(default_factory=list)
    states: list[np.ndarray] = field(default_factory=list)  # flattened MuJoCo state before each action
    obs: list[dict[str, np.ndarray]] = field(default_factory=list)  # observation each action was chosen on
    error: str | None = None


@dataclass(frozen=True)
class PickPlace:
    obj: str
    target: str
    relation: str  # "in" or "on"


def goal_subtasks(env) -> list[PickPlace | TurnOn]:
    """The BDDL goal as skills, in order: pick-and-place for ``in``/``on``, knob turning for ``turnon``;
    other predicates (open, close, …) are unsupported."""
    steps: list[PickPlace | TurnOn] = []
    for pred in env.parsed_problem["goal_state"]:
        name = pred[0].lower()
        if name in ("in", "on") and len(pred) == 3:
            steps.append(PickPlace(pred[1], pred[2], name))
        elif name == "turnon" and len(pred) == 2:
            steps.append(TurnOn(pred[1]))
        else:
            raise NotImplementedError(f"goal predicate {pred} has no expert skill")
    return steps


@dataclass
class _Plan:
    step: PickPlace
    phase: str = "pregrasp"
    grasp: Grasp | None = None
    timer: int = 0
    attempts: int = 0
    lift_from: np.ndarray | None = None
    travel_z: float = 0.0
    place_goal: np.ndarray | None = None
    waypoints: list[np.ndarray] = field(default_factory=list)
    support: float | None = None


class ScriptedExpert:
    """Call ``act()`` once per policy step (after the settle steps); returns a 7-D OSC_POSE delta action."""

    def __init__(self, env) -> None:
        self.env = env  # the robosuite/LIBERO problem env (``OffScreenRenderEnv.env``)
        self.sim = env.sim
        self.site = self.sim.model.site_name2id(GRIP_SITE)
        self.plans: list[_Plan | TurnOn] = [s if isinstance(s, TurnOn) else _Plan(s) for s in goal_subtasks(env)]
        sites = [self.sim.model.site_id2name(i) for i in range(self.sim.model.nsite)]
        self.has_table_site = "table_top" in sites
        self.surface_z = float(self.sim.data.site_xpos[sites.index("table_top")][2]) if self.has_table_site else 0.0
        self.trail: list[np.ndarray] = []  # end-effector positions seen by _reached (stall detection)

    # --- scene queries -------------------------------------------------------------------------------
    def _support(self, p: _Plan) -> float:
        """Height of what the object rests on: the table-top site (or the floor) where the scene has one,
        else the object's own bottom when first planned (living-room and study tables have no site)."""
        if p.support is None:
            bottom = float(object_points(self.sim, self._body(p.step.obj))[:, 2].min())
            on_floor_or_table = self.has_table_site or bottom < self.surface_z + 0.05
            p.support = self.surface_z if on_floor_or_table else bottom
        return p.support

    def _body(self, name: str) -> int:
        return self.env.obj_body_id[name]

    def _target_xy_top(self, target: str) -> tuple[np.ndarray, float]:
        """Where to put things for ``target``: its site or body position, and the height of its top."""
        m, d = self.sim.model, self.sim.data
        if target in self.env.obj_body_id:
            body = self._body(target)
            xy = d.body_xpos[body][:2].copy()
        else:
            site = m.site_name2id(target)
            xy, body = d.site_xpos[site][:2].copy(), int(m.site_bodyid[site])
        pts = object_points(self.sim, body)
        near = pts[np.linalg.norm(pts[:, :2] - xy, axis=1) < 0.12]
        return xy, float((near if len(near) else pts)[:, 2].max())

    def _eef(self) -> tuple[np.ndarray, np.ndarray]:
        d = self.sim.data
        return d.site_xpos[self.site].copy(), d.site_xmat[self.site].reshape(3, 3).copy()

    def _clearance_z(self, start: np.ndarray, goal: np.ndarray, obstacles: list[Box]) -> float:
        """Highest obstacle top within 6 cm of the straight path from ``start`` to ``goal`` (x/y)."""
        tops = [self.surface_z]
        path = np.linspace(start[:2], goal[:2], 12)
        for box in obstacles:
            c = box.corners()
            lo, hi = c[:, :2].min(0) - 0.06, c[:, :2].max(0) + 0.06
            if np.any(np.all((path >= lo) & (path <= hi), axis=1)):
                tops.append(c[:, 2].max())
        return float(max(tops))

    # --- taking over from any state ---------------------------------------------------------------------
    def resume_from_scene(self) -> str:
        """Phase from the scene, not from history: goals that already hold are dropped. With its object grasped,
        the first pick-and-place continues with ``release`` (at the place goal), ``lower`` (over the target),
        ``transport`` (at travel height) or ``lift``; otherwise ``close`` with the fingers at the grasp,
        ``descend`` above it, else ``pregrasp``. Knob turning restarts. Returns the phase chosen; a fresh expert
        resumed every step acts as the stateful one does, so its actions are labels that depend on the state."""
        goals = self.env.parsed_problem["goal_state"]
        self.plans = [p for p, pred in zip(self.plans, goals, strict=True) if not self.env._eval_predicate(pred)]
        self.trail.clear()
        if not self.plans:
            return "done"
        p = self.plans[0]
        if isinstance(p, TurnOn):
            return p.phase
        obj = self._body(p.step.obj)
        p.grasp = plan_grasp(self.sim, obj, self._support(p))
        p.timer = 0
        eef = self._eef()[0]
        if self._grasped(p):
            p.lift_from = self.sim.data.body_xpos[obj].copy()
            p.waypoints = self._lift_waypoints(p)  # also sets the travel height
            p.place_goal = self._place_goal(p)
            over_target = np.linalg.norm(eef[:2] - p.place_goal[:2]) < 0.015
            if over_target and eef[2] < p.place_goal[2] + 0.02:
                p.phase = "release"
            elif over_target:
                p.phase = "lower"
            elif eef[2] > p.travel_z - 0.015:
                p.phase = "transport"
            else:
                p.phase = "lift"
            return p.phase
        off = eef - p.grasp.position
        xy = float(np.linalg.norm(off[:2]))
        if xy < 0.015 and abs(off[2]) < 0.01:
            p.phase = "close"
        elif xy < 0.02 and -0.01 < off[2] < 0.1:
            p.phase = "descend"
        else:
            p.phase = "pregrasp"
        return p.phase

    def _grasped(self, p: _Plan) -> bool:
        """Both finger pads touch the object (robosuite's grasp test)."""
        return bool(self.env._check_grasp(self.env.robots[0].gripper, self.env.objects_dict[p.step.obj]))

    # --- control -------------------------------------------------------------------------------------
    def _action(self, goal: np.ndarray, yaw: float, grip: float, cap: float = 1.0) -> np.ndarray:
        pos, rot = self._eef()
        dpos = np.clip((goal - pos) / 0.05, -cap, cap)
        x = np.array([np.cos(yaw), np.sin(yaw), 0.0])
        if x @ rot[:, 0] < 0:  # the gripper is symmetric: turn the short way
            x = -x
        target = np.column_stack([x, np.cross([0.0, 0.0, -1.0], x), [0.0, 0.0, -1.0]])
        drot = np.clip(Rotation.from_matrix(target @ rot.T).as_rotvec() / 0.5, -1, 1)
        return np.clip(np.concatenate([dpos, drot, [grip]]), -1, 1)

    def _reached(self, goal: np.ndarray, tol: float) -> bool:
        """Within ``tol`` on every axis — or stalled (moved < 2 mm over 5 steps: blocked or at reach)."""
        pos = self._eef()[0]
        self.trail.append(pos)
        stalled = len(self.trail) >= 6 and np.linalg.norm(self.trail[-1] - self.trail[-6]) < 0.002
        return bool(np.all(np.abs(pos - goal) < tol) or stalled)

    # --- the algorithm box -----------------------------------------------------------------------------
    def act(self) -> np.ndarray:
        while self.plans and self.plans[0].phase == "done":
            self.plans.pop(0)
        if not self.plans:
            return np.array([0, 0, 0, 0, 0, 0, OPEN], dtype=float)
        p = self.plans[0]
        if isinstance(p, TurnOn):
            return p.act(self)
        p.timer += 1
        if p.timer == 1:
            self.trail.clear()
        if p.grasp is None:
            p.grasp = plan_grasp(self.sim, self._body(p.step.obj), self._support(p))
        g, obj = p.grasp, self._body(p.step.obj)
        action = self.approach_and_close(p, g.position, g.yaw, close_steps=12, then="lift")
        if action is not None:
            if p.phase == "lift" and p.timer == 0:  # the close has just ended
                p.lift_from = self.sim.data.body_xpos[obj].copy()
                p.waypoints = self._lift_waypoints(p)
            return action
        if p.phase == "lift":
            goal = p.waypoints[0]
            if self._reached(goal, 0.015) or p.timer > 50:
                p.waypoints.pop(0)
                p.timer = 0
                if not p.waypoints:
                    if not self._held(p):
                        return self._regrasp(p)
                    p.phase, p.place_goal = "transport", self._place_goal(p)
            return self._action(goal, g.yaw, CLOSE, cap=0.6 if g.rim else 1.0)
        if p.phase == "transport":
            goal = np.array([*p.place_goal[:2], p.travel_z])
            if not self._held(p):
                return self._regrasp(p)
            if self._reached(goal, 0.01) or p.timer > 120:
                p.phase, p.timer = "lower", 0
            return self._action(goal, g.yaw, CLOSE, cap=0.8 if g.rim else 1.0)
        if p.phase == "lower":
            if self._reached(p.place_goal, 0.008) or p.timer > 40:
                p.phase, p.timer = "release", 0
            return self._action(p.place_goal, g.yaw, CLOSE, cap=0.5)
        if p.phase == "release":
            if p.timer > 10:
                p.phase, p.timer = "retreat", 0
            return self._action(p.place_goal, g.yaw, OPEN)
        goal = p.place_goal + np.array([0, 0, 0.1])  # retreat
        if self._reached(goal, 0.02) or p.timer > 20:
            p.phase = "done"
        return self._action(goal, g.yaw, OPEN)

    def approach_and_close(self, p, position: np.ndarray, yaw: float, close_steps: int, then: str) -> np.ndarray | None:
        """The opening every skill shares: 8 cm above ``position`` → descend → close for ``close_steps`` steps; the
        phase then becomes ``then`` (the close action is still returned on that step). None past these phases."""
        above = position + np.array([0, 0, 0.08])
        if p.phase == "pregrasp":
            if self._reached(above, 0.01) or p.timer > 40:
                p.phase, p.timer = "descend", 0
            return self._action(above, yaw, OPEN)
        if p.phase == "descend":
            if self._reached(position, 0.006) or p.timer > 40:
                p.phase, p.timer = "close", 0
            return self._action(position, yaw, OPEN)
        if p.phase == "close":
            if p.timer > close_steps:
                p.phase, p.timer = then, 0
            return self._action(position, yaw, CLOSE)
        return None

    def _lift_waypoints(self, p: _Plan) -> list[np.ndarray]:
        """Straight up, unless something hangs over the object: then slide out sideways first."""
        obj = self._body(p.step.obj)
        pos = self._eef()[0]
        obstacles = obstacle_boxes(self.sim, obj)
        pts = object_points(self.sim, obj)
        over = [b for b in obstacles if _overhangs(b, pts)]
        xy, top = self._target_xy_top(p.step.target)
        p.travel_z = max(self._clearance_z(pos, np.array([*xy, 0.0]), obstacles), top) + 0.06 + (pos[2] - pts[:, 2].min())
        p.travel_z = min(p.travel_z, self._support(p) + 0.45)
        if not over:
            return [np.array([*pos[:2], p.travel_z])]
        lo = np.min([b.corners()[:, :2].min(0) for b in over], axis=0)
        hi = np.max([b.corners()[:, :2].max(0) for b in over], axis=0)
        # rise as far as the overhang allows, then leave along the shortest horizontal way out from under it
        # (a drawer wall may stop the slide early: the stall check then moves on to the lift)
        rise = max(0.01, min(b.corners()[:, 2].min() for b in over) - pts[:, 2].max() - 0.008)
        up = pos + np.array([0, 0, rise])
        exits = {(-1, 0): pts[:, 0].max() - lo[0], (1, 0): hi[0] - pts[:, 0].min(),
                 (0, -1): pts[:, 1].max() - lo[1], (0, 1): hi[1] - pts[:, 1].min()}
        (dx, dy), dist = min(exits.items(), key=lambda kv: kv[1])
        out = up + np.array([dx, dy, 0.0]) * (dist + 0.02)
        return [up, out, np.array([*out[:2], p.travel_z])]

    def _held(self, p: _Plan) -> bool:
        obj = self.sim.data.body_xpos[self._body(p.step.obj)]
        eef = self._eef()[0]
        fingers = self.sim.data.qpos[self.env.robots[0]._ref_gripper_joint_pos_indexes]
        fingers_apart = abs(fingers[0] - fingers[1]) > 0.004  # closed on something, not on nothing
        return bool(np.linalg.norm(obj - eef) < 0.16 and fingers_apart and obj[2] > p.lift_from[2] - 0.01)

    def _regrasp(self, p: _Plan) -> np.ndarray:
        p.attempts += 1
        p.grasp = plan_grasp(self.sim, self._body(p.step.obj), self._support(p))
        if p.attempts < 3 and not p.grasp.rim:
            p.grasp = dataclasses.replace(p.grasp, position=p.grasp.position - np.array([0, 0, 0.008 * p.attempts]))
        p.phase, p.timer = "pregrasp", 0
        return self._action(self._eef()[0] + np.array([0, 0, 0.05]), p.grasp.yaw, OPEN)

    def _place_goal(self, p: _Plan) -> np.ndarray:
        """Grip-site goal that puts the object's origin over the target, its bottom just above the top."""
        obj = self._body(p.step.obj)
        eef = self._eef()[0]
        xy, top = self._target_xy_top(p.step.target)
        offset_xy = self.sim.data.body_xpos[obj][:2] - eef[:2]
        bottom_below_eef = eef[2] - object_points(self.sim, obj)[:, 2].min()
        clearance = 0.025 if p.step.relation == "in" else 0.012
        return np.array([*(xy - offset_xy), top + clearance + bottom_below_eef])


def _overhangs(box, obj_pts: np.ndarray) -> bool:
    """Does ``box`` sit above the object (overlapping it in x/y) within 15 cm of its top?"""
    c = box.corners()
    lo, hi = obj_pts[:, :2].min(0), obj_pts[:, :2].max(0)
    overlap = np.all(c[:, :2].max(0) > lo) and np.all(c[:, :2].min(0) < hi)
    above = c[:, 2].min() > obj_pts[:, 2].max() - 0.005 and c[:, 2].min() < obj_pts[:, 2].max() + 0.15
    return bool(overlap and above)
